"""Kaggle birdclef_2023: optimization mode (PyTorch).

Everything comes from baseline.py unchanged: the data, the model, the seeds, the
training loop. Only the input pipeline changes, through a PipelineOptimizer that
replaces ``baseline.make_dataloader`` while training runs and puts the original
back afterwards (even on an error):

- worker processes compute the log-mel spectrograms in parallel, while the main
  process trains on the previous batch;
- persistent workers (no restart every epoch) and a deeper prefetch queue;
- a feature cache in shared memory: each clip's spectrogram is computed once, by
  whichever worker needs it first, and read by every worker in later epochs (what
  tf.data's ``cache()`` does; right only because the baseline's items are
  deterministic: turn it off with ``parameters.cache_features: false`` if you add
  random augmentation to the Dataset);
- pinned memory, only when a GPU is there to copy to;
- the training process uses the CPUs the workers leave free (at least one thread).

The shuffle order is the same as the baseline's (the same seeded generator), and
each worker's random state is derived from it, so both modes see the same batches.

To try your own optimization, write another PipelineOptimizer subclass (or use any
object with apply(), restore() and is_applied()) and use it in ``main`` below.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import baseline
from baseline import CONFIG, BirdCLEFDataset, BirdCLEFModel, load_config  # noqa: F401  (unchanged)
from harness.optimizer import PipelineOptimizer


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which `docker --cpuset-cpus` sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed (base seed + id)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class SharedFeatureCache(Dataset):
    """Wraps a Dataset of deterministic items: each item is computed once, into shared memory.

    The buffers are allocated before the workers fork, so every worker writes into
    and reads from the same memory; a second worker computing the same item at the
    same moment writes the same values, so no lock is needed.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        first, _ = dataset[0]
        size = len(dataset)  # type: ignore[arg-type]
        self.features = torch.empty((size, *first.shape), dtype=first.dtype).share_memory_()
        self.labels = torch.zeros(size, dtype=torch.long).share_memory_()
        self.filled = torch.zeros(size, dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not self.filled[index]:
            features, label = self.dataset[index]
            self.features[index] = features
            self.labels[index] = label
            self.filled[index] = True  # set last: a reader never sees a half-written item
        return self.features[index], int(self.labels[index])


class DataLoaderOptimizer(PipelineOptimizer):
    """Parallel, prefetching DataLoaders in place of the baseline's single-process ones."""

    name = "dataloader"

    def __init__(self, workers: int | None = None, prefetch_factor: int = 4, cache: bool = True) -> None:
        super().__init__()
        self.cache = cache
        # Auto: one worker per CPU (up to 8); the training process keeps the CPUs left over,
        # at least one thread, so that its threads and the workers do not fight for the cores.
        self.workers = workers if workers is not None else min(8, usable_cpus())
        self.train_threads = max(1, usable_cpus() - self.workers)
        self.prefetch_factor = prefetch_factor

    def optimize(self) -> dict[str, Any]:
        workers, prefetch, cache = self.workers, self.prefetch_factor, self.cache
        pin = torch.cuda.is_available()  # pinning only pays for host-to-GPU copies
        original_load_config = baseline.load_config

        def make_dataloader(dataset: Dataset, config: dict[str, Any], *, shuffle: bool,
                            generator: torch.Generator | None = None) -> DataLoader:
            if cache and len(dataset):  # type: ignore[arg-type]
                dataset = SharedFeatureCache(dataset)
            return DataLoader(
                dataset, batch_size=int(config["batch_size"]), shuffle=shuffle, generator=generator,
                num_workers=workers, pin_memory=pin,
                persistent_workers=workers > 0, prefetch_factor=prefetch if workers > 0 else None,
                worker_init_fn=seed_worker if workers > 0 else None,
            )

        def load_config(*args: Any, **kwargs: Any) -> dict[str, Any]:
            # Record the pipeline actually used, so the results' config tells the truth.
            config = original_load_config(*args, **kwargs)
            config.update(num_workers=workers, pin_memory=pin, train_threads=self.train_threads,
                          persistent_workers=workers > 0, prefetch_factor=prefetch if workers > 0 else None,
                          cache_features=cache)
            return config

        self.patch(baseline, "make_dataloader", make_dataloader)
        self.patch(baseline, "load_config", load_config)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.train_threads)
        self.on_restore(lambda: torch.set_num_threads(threads), "torch.set_num_threads")
        return {"num_workers": workers, "prefetch_factor": prefetch, "pin_memory": pin,
                "train_threads": self.train_threads, "cache_features": cache}


def main(mode: str = "optimization") -> dict[str, float]:
    config = load_config()
    workers = config.get("optimized_workers")
    cache = bool(config.get("cache_features", True))
    with DataLoaderOptimizer(workers=None if workers is None else int(workers), cache=cache) as optimizer:
        print(f"{mode}: applied {optimizer.name} optimizer: {optimizer.workers} DataLoader workers, "
              f"{optimizer.train_threads} training thread(s), feature cache {'on' if cache else 'off'}",
              flush=True)
        return baseline.main(mode=mode)


if __name__ == "__main__":
    main(os.environ.get("HARNESS_MODE") or "optimization")
