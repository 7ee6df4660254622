"""Kaggle birdclef_2023: optimization mode (PyTorch).

Everything comes from baseline.py unchanged: the data, the model, the seeds, the
training loop. The optimization is a list of steps (PipelineOptimizers), applied in
order while training runs and undone afterwards (even on an error); each prints one
line in the log saying what it did, or why it was skipped.

1. ``dataloader`` (always): replaces ``baseline.make_dataloader``:
   - worker processes prepare the items in parallel, while the main process trains
     on the previous batch; persistent workers and a deeper prefetch queue;
   - a feature cache in shared memory: each item is computed once, by whichever
     worker needs it first, and read by every worker in later epochs (what
     tf.data's ``cache()`` does; right only because the baseline's items are
     deterministic: turn it off with ``parameters.cache_features: false`` if you add
     random augmentation to the Dataset). It stays off when the items would fill
     more than half of /dev/shm (raise ``resources.shm_size`` to keep it);
   - pinned memory, only when a GPU is there to copy to;
   - the training process uses the CPUs the workers leave free (at least one thread).
2. ``device_spectrogram`` (GPU): the workers only make waveforms; the model computes
   the log-mel spectrogram on its device (``torch.stft`` and the mel filterbank as a
   matrix), batched, so the CPU work per clip shrinks and the GPU does the rest.
3. ``channels_last`` (GPU): the model's weights and the convolutions' inputs in
   channels-last memory format, which tensor-core convolutions prefer.
4. ``mixed_precision`` (GPU): the forward pass under ``torch.autocast``, in bf16 where
   the GPU has it, else in fp16 with a GradScaler (wrapped around the optimizer, so
   the training loop stays the baseline's).

Steps 2-4 run where a GPU is (``"auto"``, the default); on the CPU the optimization is
step 1 alone. Each can be forced with ``parameters`` in experiment_config.json:
``device_spectrogram`` and ``channels_last``: true / false / "auto";
``mixed_precision``: "bf16" / "fp16" / false / "auto".

The shuffle order is the same as the baseline's (the same seeded generator), and
each worker's random state is derived from it, so both modes see the same batches;
steps 2-4 change the arithmetic (on-device FFTs, lower precision), not the data.

To try your own optimization, write another PipelineOptimizer subclass (or use any
object with apply(), restore() and is_applied()) and add it to the steps in ``main``.
"""

from __future__ import annotations

import os
import random
import shutil
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import baseline
from baseline import CONFIG, BirdCLEFDataset, BirdCLEFModel, load_config  # noqa: F401  (unchanged)
from harness.optimizer import OptimizationSteps, PipelineOptimizer


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


def cache_fits(dataset: Dataset) -> tuple[bool, str]:
    """Whether caching every item of ``dataset`` takes at most half of /dev/shm's free space."""
    first, _ = dataset[0]
    size = first.element_size() * first.nelement() * len(dataset)  # type: ignore[arg-type]
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:  # no /dev/shm (not Linux): torch uses its own shared memory
        return True, ""
    return size <= free // 2, f"{size / 1e9:.1f} GB of items, {free / 1e9:.1f} GB free in /dev/shm"


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
                fits, sizes = cache_fits(dataset)
                if fits:
                    dataset = SharedFeatureCache(dataset)
                else:
                    print(f"feature cache off for this data set ({sizes}); raise resources.shm_size "
                          "to keep it", flush=True)
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

    def describe(self, stats: dict[str, Any]) -> str:
        return (f"{self.workers} DataLoader workers, {self.train_threads} training thread(s), "
                f"prefetch {self.prefetch_factor}, feature cache {'on' if self.cache else 'off'}, "
                f"pinned memory {'on' if stats['pin_memory'] else 'off'}")


# ------------------------------------------------------------------ GPU steps
def choice(config: dict[str, Any], key: str) -> Any:
    """A step's setting from ``parameters``: "auto" (the default) means: only where a GPU is."""
    value = config.get(key, "auto")
    return torch.cuda.is_available() if value == "auto" else value


def record_in_config(step: PipelineOptimizer, **values: Any) -> None:
    """Patch baseline.load_config so that the run's recorded config says what ``step`` changed."""
    original = baseline.load_config

    def load_config(*args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original(*args, **kwargs)
        config.update(values)
        return config

    step.patch(baseline, "load_config", load_config)


def waveform_only(wave: np.ndarray, config: dict[str, Any]) -> torch.Tensor:
    """Stands in for baseline.log_mel_spectrogram: the Dataset yields the wave, the model does the rest."""
    return torch.from_numpy(wave)


class LogMelFrontEnd(nn.Module):
    """baseline.log_mel_spectrogram for a batch of waves [B, 1, samples], on the module's device.

    The same recipe: reflect-padded frames, a symmetric Hann window (numpy's hanning),
    power spectrum, the baseline's mel filterbank, log, and per-clip standardisation.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.n_fft, self.hop = int(config["n_fft"]), int(config["hop_length"])
        filters = baseline.mel_filterbank(int(config["sample_rate"]), self.n_fft, int(config["n_mels"]),
                                          float(config["fmin"]), float(config["fmax"]))
        # Not in the state dict: the model's saved weights stay those of the baseline's model.
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=False), persistent=False)
        self.register_buffer("filters", torch.from_numpy(filters), persistent=False)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waves.device.type, enabled=False):  # the FFT stays in float32
            spectrum = torch.stft(waves.flatten(1).float(), self.n_fft, hop_length=self.hop, window=self.window,
                                  center=True, pad_mode="reflect", return_complex=True).abs() ** 2
            mel = torch.log(spectrum.transpose(1, 2) @ self.filters + 1e-6).transpose(1, 2)
            mean, std = mel.mean(dim=(1, 2), keepdim=True), mel.std(dim=(1, 2), keepdim=True)
            return ((mel - mean) / (std + 1e-6)).unsqueeze(1)


class DeviceSpectrogram(PipelineOptimizer):
    """The log-mel spectrogram moves from the Dataset (CPU, per clip) into the model (its device, batched)."""

    name = "device_spectrogram"

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = bool(enabled)

    def skip_reason(self) -> str | None:
        return None if self.enabled else "no GPU; parameters.device_spectrogram: true uses it on the CPU"

    def optimize(self) -> dict[str, Any]:
        model_class = baseline.BirdCLEFModel

        class SpectrogramModel(model_class):  # type: ignore[misc, valid-type]
            def __init__(self, config: dict[str, Any], num_classes: int) -> None:
                super().__init__(config, num_classes)  # the same weights as the baseline's, same seed
                self.frontend = LogMelFrontEnd(config)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return super().forward(self.frontend(x))

        self.patch(baseline, "log_mel_spectrogram", waveform_only)
        self.patch(baseline, "BirdCLEFModel", SpectrogramModel)
        record_in_config(self, device_spectrogram=True)
        return {}

    def describe(self, stats: dict[str, Any]) -> str:
        return "the model computes the log-mel spectrogram on its device (torch.stft + mel matrix); " \
               "the workers only make waveforms"


class ChannelsLast(PipelineOptimizer):
    """The model's weights and its convolutions' inputs in channels-last (NHWC) memory format."""

    name = "channels_last"

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = bool(enabled)

    def skip_reason(self) -> str | None:
        return None if self.enabled else "no GPU; parameters.channels_last: true uses it on the CPU"

    def optimize(self) -> dict[str, Any]:
        model_class = baseline.BirdCLEFModel

        def to_channels_last(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])

        class ChannelsLastModel(model_class):  # type: ignore[misc, valid-type]
            def __init__(self, config: dict[str, Any], num_classes: int) -> None:
                super().__init__(config, num_classes)
                self.to(memory_format=torch.channels_last)  # .to(device) later keeps the format
                self.features.register_forward_pre_hook(to_channels_last)

        self.patch(baseline, "BirdCLEFModel", ChannelsLastModel)
        record_in_config(self, channels_last=True)
        return {}

    def describe(self, stats: dict[str, Any]) -> str:
        return "model weights and convolution inputs in channels-last memory format"


def precision_for(setting: Any) -> str | None:
    """"bf16", "fp16" or None (off) for a ``mixed_precision`` setting; True means "auto"."""
    if setting in (False, None, "off", "none"):
        return None
    if setting in ("bf16", "fp16"):
        return str(setting)
    if not torch.cuda.is_available():
        return None
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by the scaler's scale (what scaler.scale(loss) does)."""

    @staticmethod
    def forward(ctx: Any, outputs: torch.Tensor, scaler: Any) -> torch.Tensor:
        ctx.scaler = scaler
        return outputs.view_as(outputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.scaler.scale(grad), None


class MixedPrecision(PipelineOptimizer):
    """The forward pass under autocast; fp16 adds a GradScaler, wrapped around the baseline's optimizer."""

    name = "mixed_precision"

    def __init__(self, setting: Any) -> None:
        super().__init__()
        self.dtype = precision_for(setting)
        self.scaler: Any = None  # the GradScaler while fp16 is applied

    def skip_reason(self) -> str | None:
        return None if self.dtype else "no GPU; parameters.mixed_precision: \"bf16\" uses it on the CPU"

    def optimize(self) -> dict[str, Any]:
        dtype = torch.bfloat16 if self.dtype == "bf16" else torch.float16
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        scaler = self.scaler = torch.amp.GradScaler(device_type) if self.dtype == "fp16" else None
        model_class = baseline.BirdCLEFModel

        class AutocastModel(model_class):  # type: ignore[misc, valid-type]
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                with torch.autocast(device_type, dtype=dtype):
                    outputs = super().forward(x)
                outputs = outputs.float()  # the loss and the accuracy in float32
                return _ScaleGradient.apply(outputs, scaler) if scaler and torch.is_grad_enabled() else outputs

        self.patch(baseline, "BirdCLEFModel", AutocastModel)
        if scaler is not None:
            self.patch(torch.optim, "Adam", scaled_optimizer(torch.optim.Adam, scaler))
        record_in_config(self, mixed_precision=self.dtype)
        return {"dtype": self.dtype, "device": device_type, "grad_scaler": scaler is not None}

    def describe(self, stats: dict[str, Any]) -> str:
        scaling = " with a GradScaler" if stats["grad_scaler"] else ""
        return f"{stats['dtype']} autocast on {stats['device']} for the forward pass{scaling}"


def scaled_optimizer(base: type[torch.optim.Optimizer], scaler: Any) -> type[torch.optim.Optimizer]:
    """``base`` whose step() goes through ``scaler`` (unscale, skip on inf/NaN, update the scale)."""

    class Scaled(base):  # type: ignore[misc, valid-type]
        _in_scaler = False

        def step(self, closure: Any = None) -> Any:
            if self._in_scaler:  # scaler.step() calling back in: the real step
                return super().step(closure)
            self._in_scaler = True
            try:
                result = scaler.step(self)
                scaler.update()
            finally:
                self._in_scaler = False
            return result

    Scaled.__name__ = Scaled.__qualname__ = f"Scaled{base.__name__}"
    return Scaled


def optimization_steps(config: dict[str, Any], mode: str = "optimization") -> OptimizationSteps:
    """The steps, in the order they apply; settings from the config's ``parameters``."""
    workers = config.get("optimized_workers")
    return OptimizationSteps([
        DataLoaderOptimizer(workers=None if workers is None else int(workers),
                            cache=bool(config.get("cache_features", True))),
        DeviceSpectrogram(choice(config, "device_spectrogram")),
        ChannelsLast(choice(config, "channels_last")),
        MixedPrecision(config.get("mixed_precision", "auto")),
    ], echo=lambda line: print(line, flush=True), prefix=f"{mode}: ")


def main(mode: str = "optimization") -> dict[str, float]:
    with optimization_steps(load_config(), mode):
        return baseline.main(mode=mode)


if __name__ == "__main__":
    main(os.environ.get("HARNESS_MODE") or "optimization")
