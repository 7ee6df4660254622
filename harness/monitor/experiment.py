"""``ExperimentMonitor`` and its parts (``Timer``, ``ResourceMonitor``, ``MetricsLogger``), seed 004 §3.3-§3.4.

Code written against the seed's ``monitoring_tools`` API runs unchanged. Two ways to run:

* Under the agent (``HARNESS_AGENT=1``): the agent samples resources; this monitor only
  streams batch / loss / accuracy / metric / phase / mode events to ``HARNESS_EVENTS_FILE``.
* Plain ``python baseline.py``: the monitor runs its own sampler thread, keeps everything in
  memory, and ``save_json()`` writes the seed's format.

The hot path (``start_batch`` + ``end_batch``) reads ``perf_counter_ns`` and appends one
tuple; JSON encoding happens later on the flusher thread.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Callable, Iterable, Iterator

from harness.monitor.events import EventWriter
from harness.monitor.resources import ResourceMonitor
from harness.monitor.timer import BatchRecord, Timer


class MetricsLogger:
    """Loss, accuracy and any other named metric, as event records."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self._emit = emit
        self.losses: list[tuple[int, int, float]] = []
        self.accuracies: list[tuple[int, int, float]] = []
        self.custom: dict[str, list[tuple[Any, float]]] = {}

    def log_loss(self, epoch: int, batch: int, loss: float) -> None:
        value = float(loss)
        self.losses.append((epoch, batch, value))
        self._emit({"type": "loss", "epoch": epoch, "batch": batch, "value": value})

    def log_accuracy(self, epoch: int, batch: int, accuracy: float) -> None:
        value = float(accuracy)
        self.accuracies.append((epoch, batch, value))
        self._emit({"type": "accuracy", "epoch": epoch, "batch": batch, "value": value})

    def log_metric(self, name: str, value: float, step: Any = None) -> None:
        value = float(value)
        self.custom.setdefault(name, []).append((step, value))
        self._emit({"type": "metric", "name": name, "value": value, "step": step})


class _ModeRun:
    """What one mode recorded: its timer, metrics, events and (outside the agent) samples."""

    def __init__(self, name: str, config: dict[str, Any] | None, sync: str | None,
                 emit: Callable[[dict[str, Any]], None]) -> None:
        self.name = name
        self.config = dict(config) if config else {}
        self.timer = Timer(sync)
        self.events: list[dict[str, Any]] = []
        self.metrics = MetricsLogger(emit)
        self.resources: ResourceMonitor | None = None
        self.flushed_batches = 0
        self.stopped = False


class _Phase:
    """Returned by :meth:`ExperimentMonitor.phase`; usable as a context manager to restore the previous phase."""

    def __init__(self, monitor: "ExperimentMonitor", previous: str | None) -> None:
        self._monitor = monitor
        self._previous = previous

    def __enter__(self) -> "_Phase":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            self._monitor.phase(self._previous)


class ExperimentMonitor:
    """Seed 004's monitor: time batches, log loss/accuracy, sample resources, save JSON.

    Under the agent everything is streamed to events.jsonl as it happens; without it,
    ``save_json()`` writes ``<save_dir>/<experiment_name>_results.json``.
    """

    def __init__(self, experiment_name: str | None = None, save_dir: str | os.PathLike[str] = "./results",
                 sync: str | None = None) -> None:
        self.experiment_name = experiment_name or os.environ.get("HARNESS_EXPERIMENT", "experiment")
        self.save_dir = Path(save_dir)
        self.sync = sync
        self.timestamp = time.time()
        self.modes: dict[str, _ModeRun] = {}
        self.current: _ModeRun | None = None
        self._phase: str | None = None
        self.under_agent = os.environ.get("HARNESS_AGENT") == "1"
        events_file = os.environ.get("HARNESS_EVENTS_FILE")
        # wall = perf + offset: perf_counter and monotonic are the same clock on Linux
        self._wall_offset = time.time() - perf_counter_ns() / 1e9
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # _emit (script thread) vs _drain (flusher thread)
        self._writer: EventWriter | None = None
        if events_file:
            self._writer = EventWriter(events_file)
            self._writer.add_source(self._drain)

    # -- modes ------------------------------------------------------------------------
    def start_mode(self, mode: str, config: dict[str, Any] | None = None, resource_interval: float = 1.0) -> None:
        """Begin timing a mode; outside the agent also starts sampling every ``resource_interval`` s."""
        if self.current is not None and not self.current.stopped:
            self.stop_mode()
        run = _ModeRun(mode, config, self.sync, self._emit)
        self.modes[mode] = run
        self.current = run
        self._emit({"type": "mode_start", "mode": mode, "config": run.config})
        if not self.under_agent:
            interval = float(os.environ.get("HARNESS_SAMPLING_INTERVAL", resource_interval))
            run.resources = ResourceMonitor(interval)
            try:
                run.resources.start()
            except Exception as e:  # measuring must never stop training
                run.resources = None
                run.events.append({"type": "sample", "t": time.time(), "m": time.monotonic(),
                                   "unavailable": {"resources": f"sampler failed to start: {e}"}})
        run.timer.start()

    def stop_mode(self) -> float:
        """End the current mode; returns its total time in seconds."""
        run = self.current
        if run is None or run.stopped:
            return 0.0
        total = run.timer.stop()
        if run.resources is not None:
            run.resources.close(wait=False)  # the sampler thread takes the final sample, not us
        stop: dict[str, Any] = {"type": "mode_stop", "mode": run.name, "total_time": total}
        peak = _allocator_peak_mb()
        if peak is not None:
            stop["gpu_allocator_peak_mb"] = peak
        self._emit(stop)
        run.stopped = True
        self.flush()
        return total

    def mode(self, mode: str, config: dict[str, Any] | None = None, resource_interval: float = 1.0) -> "_ModeContext":
        """``with monitor.mode("baseline", config=cfg): ...`` starts and always stops a mode."""
        return _ModeContext(self, mode, config, resource_interval)

    # -- batches --------------------------------------------------------------------
    def start_batch(self) -> None:
        self._run().timer.start_batch()

    def end_batch(self, n: int | None = None) -> float | None:
        """Close the batch; ``n`` is its number of samples (for throughput)."""
        return self._run().timer.end_batch(n)

    def batches(self, iterable: Iterable[Any], epoch: int | None = None, size: int | None = None) -> Iterator[Any]:
        """Yield from ``iterable``, timing each batch and the wait for it.

        The batch size is ``size`` or read from the batch (first tensor's ``shape[0]`` or
        ``len``). A ``break`` out of the loop drops the unfinished batch.
        """
        timer = self._run().timer
        if epoch is not None:
            timer.epoch = epoch
        it = iter(iterable)
        while True:
            asked = perf_counter_ns()
            try:
                item = next(it)
            except StopIteration:
                return
            timer.start_batch(waited_since=asked)
            yield item
            timer.end_batch(size if size is not None else _batch_len(item))

    # -- metrics --------------------------------------------------------------------
    def log_loss(self, epoch: int, batch: int, loss: float) -> None:
        run = self._run()
        run.timer.epoch = epoch
        run.metrics.log_loss(epoch, batch, loss)

    def log_accuracy(self, epoch: int, batch: int, accuracy: float) -> None:
        run = self._run()
        run.timer.epoch = epoch
        run.metrics.log_accuracy(epoch, batch, accuracy)

    def log_metric(self, name: str, value: float, step: Any = None) -> None:
        """Any other number: learning rate, validation score, ..."""
        self._run().metrics.log_metric(name, value, step)

    def set_epoch(self, epoch: int) -> None:
        self._run().timer.epoch = epoch

    def phase(self, name: str) -> _Phase:
        """Mark a phase (``warmup``, ``train``, ``eval``) so that modes compare over the same windows.

        The wait before the next batch is not counted as data wait.
        """
        previous = self._phase
        self._phase = name
        run = self._run()
        run.timer.break_wait()
        self._emit({"type": "phase", "name": name})
        return _Phase(self, previous)

    # -- output ---------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        """The seed's JSON document (§6.1, extended) for every mode so far."""
        from harness.results.build import build_mode

        return {
            "experiment_name": self.experiment_name,
            "timestamp": int(self.timestamp),
            "datetime": _dt.datetime.fromtimestamp(self.timestamp).isoformat(timespec="seconds"),
            "modes": {name: build_mode(self._mode_events(run), config=run.config) for name, run in self.modes.items()},
        }

    def output_dir(self) -> Path:
        """Where ``save_json`` and ``plot_metrics`` write: the run folder under the agent, else ``save_dir``."""
        results_dir = os.environ.get("HARNESS_RESULTS_DIR")
        if self.under_agent and results_dir:
            return Path(results_dir)
        return self.save_dir

    def save_json(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write :meth:`results` atomically; returns the file's path."""
        from harness.results.events import sanitise
        from harness.results.io import write_json_atomic

        target = Path(path) if path else self.output_dir() / f"{self.experiment_name}_results.json"
        write_json_atomic(target, sanitise(self.results()))
        return target

    def plot_metrics(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Batch time, loss, accuracy, CPU and memory per mode in one PNG (matplotlib Agg, imported here)."""
        from harness.monitor.plot import plot_results

        target = Path(path) if path else self.output_dir() / f"{self.experiment_name}_metrics.png"
        return plot_results(self.results(), target)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Stop the running mode and the event writer (also done at ``with`` exit)."""
        if self.current is not None and not self.current.stopped:
            self.stop_mode()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "ExperimentMonitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # the writer is a daemon thread: a script that never calls close() still gets its last events
        try:
            if self._writer is not None:
                self._writer.flush()
        except Exception:
            pass

    # -- internals -----------------------------------------------------------------------
    def _run(self) -> _ModeRun:
        if self.current is None or self.current.stopped:
            # seed code may log before start_mode; give it an implicit mode rather than fail
            self.start_mode(os.environ.get("HARNESS_MODE", "default"))
        return self.current  # type: ignore[return-value]

    def _emit(self, record: dict[str, Any]) -> None:
        m = time.monotonic()
        record = {"t": m + self._wall_offset, "m": m, **record}
        if self.current is not None:
            self.current.events.append(record)
        if self._writer is not None:
            with self._lock:
                self._pending.append(record)

    def _batch_event(self, r: BatchRecord) -> dict[str, Any]:
        m = r.end_ns / 1e9
        return {"t": m + self._wall_offset, "m": m, "type": "batch", "i": r.i, "dt": r.dt_ns / 1e9,
                "wait": r.wait_ns / 1e9 if r.wait_ns is not None else None, "n": r.n, "epoch": r.epoch}

    def _drain(self) -> list[dict[str, Any]]:
        """Records produced since the last flush (called by the writer under its lock)."""
        with self._lock:
            out, self._pending = self._pending, []
        for run in list(self.modes.values()):
            records = run.timer.records
            end = len(records)  # append-only list: reading up to a length is race-free
            if end > run.flushed_batches:
                out.extend(self._batch_event(r) for r in records[run.flushed_batches:end])
                run.flushed_batches = end
        return out

    def _mode_events(self, run: _ModeRun) -> list[dict[str, Any]]:
        events = list(run.events)
        events.extend(self._batch_event(r) for r in run.timer.records)
        if run.resources is not None:
            run.resources.join()
            events.extend(run.resources.samples)
        events.sort(key=lambda e: e.get("m", 0.0))
        return events


class _ModeContext:
    def __init__(self, monitor: ExperimentMonitor, mode: str, config: dict[str, Any] | None,
                 interval: float) -> None:
        self._args = (monitor, mode, config, interval)

    def __enter__(self) -> ExperimentMonitor:
        monitor, mode, config, interval = self._args
        monitor.start_mode(mode, config=config, resource_interval=interval)
        return monitor

    def __exit__(self, *exc: object) -> None:
        self._args[0].stop_mode()


def _batch_len(item: Any) -> int | None:
    """Samples in a batch: the leading dimension of its first tensor-like part, else ``len``."""
    first = item
    if isinstance(item, (tuple, list)) and item:
        first = item[0]
    elif isinstance(item, dict) and item:
        first = next(iter(item.values()))
    shape = getattr(first, "shape", None)
    if shape is not None and len(shape) > 0:
        try:
            return int(shape[0])
        except (TypeError, ValueError):
            return None
    try:
        return len(first)
    except TypeError:
        return None


def _allocator_peak_mb() -> float | None:
    """The framework allocator's peak GPU memory (torch), the attribution that works in any PID namespace."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except Exception:
        return None
    return None
