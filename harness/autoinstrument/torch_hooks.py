"""PyTorch step timing from outside the script: an optimizer hook and a timed DataLoader iterator.

Installed when ``torch`` is imported (see :mod:`harness.autoinstrument.boot`). Two global hooks,
nothing on the user's objects:

* ``torch.optim.optimizer.register_optimizer_step_post_hook``: the end of every optimizer step
  ends a training step. A step is the time between two optimizer steps.
* ``_BaseDataLoaderIter.__next__`` (the class every DataLoader iterator inherits it from) is
  wrapped: the time spent inside it is the wait for data, counted into the step it falls in.

A DataLoader iterator that runs out (the end of an epoch, or of an evaluation pass) breaks the
chain: the next step starts at the first batch fetched after it from the iterator that feeds
that step, so an evaluation pass between epochs is not counted as a training step. With several
optimizers (a GAN) the first one to step marks the steps; when it stops stepping and another one
steps twice in a row, that one takes over (a second training stage with a new optimizer).

When the model's parameters are on a CUDA device the hook synchronises before reading the
clock, which is ``ExperimentMonitor(sync="cuda")``'s meaning of a step: kernels are
asynchronous, and without it a step would "end" when its kernels are queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter_ns
from types import ModuleType
from typing import Any, Callable

from harness.autoinstrument.recorder import AutoRecorder


def samples_in(item: Any) -> int | None:
    """Samples in a batch: the leading dimension of its first tensor-like part, else ``len``."""
    first = item
    if isinstance(item, (tuple, list)) and item:
        first = item[0]
    elif isinstance(item, Mapping) and item:
        first = next(iter(item.values()))
    shape = getattr(first, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) > 0 else None
    try:
        return len(first)
    except TypeError:
        return None


class StepTimer:
    """Turns optimizer steps and DataLoader fetches into step records (nanoseconds)."""

    def __init__(self, recorder: AutoRecorder, sync: Callable[[Any], Callable[[], None] | None]) -> None:
        self.recorder = recorder
        self._sync_for = sync  # optimizer -> a synchronise function, or None on the CPU
        self._syncs: dict[int, Callable[[], None] | None] = {}
        self.epoch = 0
        self.last_end: int | None = None
        self.broken = True  # no step yet, or a DataLoader iterator ran out since the last one
        self.wait = 0
        self.n: int | None = 0
        self.fetches = 0
        self.per_iter: dict[int, list[Any]] = {}  # while broken: id(iterator) -> [start, wait, n]
        self.last_iter: int | None = None
        self.feeding: int | None = None  # the iterator whose batches fed the last step
        self.marker: int | None = None  # id of the optimizer whose steps end training steps
        self.others: dict[int, int] = {}

    def fetched(self, iterator: object, start: int, end: int, item: Any) -> None:
        """A DataLoader iterator returned ``item`` after waiting from ``start`` to ``end``."""
        n = samples_in(item)
        key = id(iterator)
        self.last_iter = key
        if self.broken:
            acc = self.per_iter.get(key)
            if acc is None:
                self.per_iter[key] = [start, end - start, n]
            else:
                acc[1] += end - start
                acc[2] = acc[2] + n if acc[2] is not None and n is not None else None
            return
        self.wait += end - start
        self.n = self.n + n if self.n is not None and n is not None else None
        self.fetches += 1

    def ended(self, iterator: object) -> None:
        """A DataLoader iterator ran out: the next step starts at its own first batch."""
        if id(iterator) == self.feeding:
            self.epoch += 1
            self.feeding = None
        self.broken = True
        self.per_iter.clear()
        self.last_iter = None

    def step(self, optimizer: object) -> None:
        """An optimizer finished a step: record the training step that ends here."""
        key = id(optimizer)
        if key != self.marker:
            if self.marker is not None:
                self.others[key] = self.others.get(key, 0) + 1
                if self.others[key] < 2:
                    return
            self.marker = key  # the first optimizer, or the one that took over
        self.others.clear()
        sync = self._syncs.get(key, False)
        if sync is False:
            sync = self._syncs[key] = self._sync_for(optimizer)
        if sync is not None:
            sync()
        t = perf_counter_ns()
        start: int | None
        if self.broken:
            acc = self.per_iter.get(self.last_iter) if self.last_iter is not None else None
            start, wait, n = (acc[0], acc[1], acc[2]) if acc is not None else (None, None, None)
            self.per_iter.clear()
            self.broken = False
        else:
            start = self.last_end
            wait, n = (self.wait, self.n) if self.fetches else (None, None)
        if start is not None:
            steps = self.recorder.steps
            steps.append((len(steps), t - start - (wait or 0), wait, n, self.epoch, t))
        self.feeding = self.last_iter
        self.last_end = t
        self.wait = 0
        self.n = 0
        self.fetches = 0


def _cuda_sync_for(torch: ModuleType) -> Callable[[Any], Callable[[], None] | None]:
    def sync_for(optimizer: Any) -> Callable[[], None] | None:
        for group in getattr(optimizer, "param_groups", ()):
            for p in group.get("params", ()):
                return torch.cuda.synchronize if getattr(p, "is_cuda", False) else None
        return None

    return sync_for


_TIMER: StepTimer | None = None


def _post_step_hook(optimizer: Any, args: Any, kwargs: Any) -> None:
    timer = _TIMER
    if timer is None or not timer.recorder.on:
        return
    try:
        timer.step(optimizer)
    except Exception as e:  # never stop training
        timer.recorder.fail("the optimizer step hook", e)


class Installed:
    """What :func:`install` changed, so that tests can undo it."""

    def __init__(self, base: type, original_next: Callable[..., Any], handle: Any) -> None:
        self.base, self.original_next, self.handle = base, original_next, handle

    def remove(self) -> None:
        global _TIMER
        self.base.__next__ = self.original_next  # type: ignore[method-assign]
        self.handle.remove()
        _TIMER = None


def install(torch: ModuleType, recorder: AutoRecorder) -> Installed:
    """Register the optimizer hook and wrap the DataLoader iterator's ``__next__``."""
    global _TIMER
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    timer = _TIMER = StepTimer(recorder, _cuda_sync_for(torch))
    original = _BaseDataLoaderIter.__next__

    def __next__(self: Any) -> Any:
        if not recorder.on:
            return original(self)
        start = perf_counter_ns()
        try:
            item = original(self)
        except StopIteration:
            try:
                timer.ended(self)
            except Exception as e:
                recorder.fail("the DataLoader hook", e)
            raise
        end = perf_counter_ns()
        try:
            timer.fetched(self, start, end, item)
        except Exception as e:  # never stop training
            recorder.fail("the DataLoader hook", e)
        return item

    __next__.__wrapped__ = original  # type: ignore[attr-defined]
    __next__.__qualname__ = original.__qualname__
    _BaseDataLoaderIter.__next__ = __next__  # type: ignore[method-assign]
    handle = register_optimizer_step_post_hook(_post_step_hook)
    recorder.frameworks.append("torch")
    return Installed(_BaseDataLoaderIter, original, handle)
