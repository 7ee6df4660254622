"""``Timer``: batch times and the wait for data between batches, on the training loop's hot path.

``start_batch`` + ``end_batch`` read ``perf_counter_ns`` and append one ``BatchRecord``; JSON
encoding happens later, on the event writer's flusher thread.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Callable, NamedTuple


class BatchRecord(NamedTuple):
    """One timed batch, as the hot path records it (nanoseconds; encoded to an event later)."""

    i: int
    dt_ns: int
    wait_ns: int | None
    n: int | None
    epoch: int | None
    end_ns: int


def _cuda_sync() -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` when torch is imported and has a GPU, else ``None``."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # type: ignore[no-redef]
        except ImportError:
            return None
    try:
        if torch.cuda.is_available():
            return torch.cuda.synchronize
    except Exception:
        return None
    return None


class Timer:
    """Times batches (and the wait for data between them) and the mode's total time.

    ``sync="cuda"`` calls ``torch.cuda.synchronize()`` at both ends of each batch: CUDA
    kernels are asynchronous, so without it a batch "ends" when its kernels are queued and
    the time shows up in whichever later call blocks. Synchronising makes each batch's time
    true at the cost of the CPU/GPU overlap between batches (often a few percent).
    """

    def __init__(self, sync: str | None = None) -> None:
        self.sync = sync
        self._sync = _cuda_sync() if sync == "cuda" else None
        self.records: list[BatchRecord] = []
        self.epoch: int | None = None
        self._t0: int | None = None
        self._wait: int | None = None
        self._last_end: int | None = None
        self._start: int | None = None
        self._stop: int | None = None

    def start(self) -> None:
        self._start = perf_counter_ns()
        self._stop = None

    def stop(self) -> float:
        self._stop = perf_counter_ns()
        return self.total_time

    @property
    def total_time(self) -> float:
        if self._start is None:
            return 0.0
        return ((self._stop or perf_counter_ns()) - self._start) / 1e9

    def start_batch(self, waited_since: int | None = None) -> None:
        if self._sync is not None:
            self._sync()
        t = perf_counter_ns()
        since = waited_since if waited_since is not None else self._last_end
        self._wait = t - since if since is not None else None
        self._t0 = t

    def end_batch(self, n: int | None = None) -> float | None:
        """Record the batch; returns its time in seconds (``None`` without a ``start_batch``)."""
        if self._sync is not None:
            self._sync()
        t = perf_counter_ns()
        t0 = self._t0
        if t0 is None:
            return None
        self.records.append(BatchRecord(len(self.records), t - t0, self._wait, n, self.epoch, t))
        self._last_end = t
        self._t0 = None
        return (t - t0) / 1e9

    def break_wait(self) -> None:
        """The next batch's wait is not data wait (an eval pass or a phase change came between)."""
        self._last_end = None

    @property
    def batch_times(self) -> list[tuple[int, float]]:
        """Seed format: ``[(global_batch_idx, seconds)]``."""
        return [(r.i, r.dt_ns / 1e9) for r in self.records]
