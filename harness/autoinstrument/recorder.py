"""Where the automatic hooks write: ``batch`` and ``note`` records in the run's ``events.jsonl``.

One :class:`AutoRecorder` per instrumented process, made when the first framework hook is
installed. The hot path appends a tuple to a list; the event writer's flusher thread turns
new tuples into records (the same format as :class:`~harness.monitor.ExperimentMonitor`'s,
marked ``"source": "auto"``). Anything that goes wrong here is caught, recorded once as a
note and turns the recorder off: measuring must never stop training.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from time import perf_counter_ns
from typing import Any

from harness.monitor.events import EventWriter

# (i, dt_ns, wait_ns | None, n | None, epoch | None, end_perf_ns)
Step = tuple

NO_STEPS = {
    "torch": "no optimizer steps seen: per-step timing unavailable (end-to-end time only)",
    "keras": "no Model.fit training seen: per-step timing unavailable (end-to-end time only)",
}


class AutoRecorder:
    """Step records and notes of the automatic instrumentation, streamed to ``events_file``."""

    def __init__(self, events_file: str, register_exit: bool = True) -> None:
        self.on = True
        self.stepped_aside = False
        self.failed = False
        self.steps: list[Step] = []
        self.frameworks: list[str] = []  # hooks installed, in order ("torch", "keras")
        self.external_batches = 0  # batches timed for us by the monitor (Keras callback)
        self.own_monitor: Any = None  # the ExperimentMonitor behind the Keras callback, once made
        self.creating_monitor = False  # True while we construct that monitor (not the script's)
        self._notes: list[str] = []
        self._pending: list[dict[str, Any]] = []
        self._flushed = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._wall_offset = time.time() - perf_counter_ns() / 1e9
        self.writer = EventWriter(events_file)
        self.writer.add_source(self._drain)
        if register_exit:
            atexit.register(self.finish)

    # -- what the hooks call ---------------------------------------------------------------
    def note(self, text: str) -> None:
        """Say something once in the run's record (``run.notes`` in results.json)."""
        if text in self._notes:
            return
        self._notes.append(text)
        m = time.monotonic()
        with self._lock:
            self._pending.append({"t": m + self._wall_offset, "m": m, "type": "note", "source": "auto",
                                  "text": text})

    def fail(self, where: str, exc: BaseException) -> None:
        """A hook raised: record it once and turn the automatic timing off."""
        first = not self.failed
        self.on = False
        self.failed = True
        if first:
            self.note(f"automatic step timing turned off: {where} failed ({type(exc).__name__}: {exc})")

    def step_aside(self) -> None:
        """The script times its own batches (``ExperimentMonitor``): record nothing more."""
        self.on = False
        self.stepped_aside = True

    def finish(self) -> None:
        """At interpreter exit: say so when no step was seen, then write everything out."""
        if os.getpid() != self._pid:  # a forked DataLoader worker inherited us: not its business
            return
        try:
            if not self.steps and not self.external_batches and not self.stepped_aside and not self.failed:
                for framework in self.frameworks:
                    if framework in NO_STEPS and not self._saw_batches(framework):
                        self.note(NO_STEPS[framework])
            if self.own_monitor is not None:
                self.own_monitor.flush()
        finally:
            self.writer.close()

    def _saw_batches(self, framework: str) -> bool:
        if framework == "keras" and self.own_monitor is not None:
            current = getattr(self.own_monitor, "current", None)
            return bool(current is not None and current.timer.records)
        return False

    # -- flusher side ------------------------------------------------------------------------
    def _drain(self) -> list[dict[str, Any]]:
        """New records since the last flush (called on the writer's thread, under its lock)."""
        with self._lock:
            out, self._pending = self._pending, []
        end = len(self.steps)  # append-only list: reading up to a length is race-free
        if end > self._flushed:
            offset = self._wall_offset
            for i, dt, wait, n, epoch, end_ns in self.steps[self._flushed:end]:
                m = end_ns / 1e9
                out.append({"t": m + offset, "m": m, "type": "batch", "i": i, "dt": dt / 1e9,
                            "wait": wait / 1e9 if wait is not None else None, "n": n, "epoch": epoch,
                            "source": "auto"})
            self._flushed = end
        return out


_RECORDER: AutoRecorder | None = None


def get_recorder() -> AutoRecorder | None:
    """This process's recorder, made on first use; ``None`` when no events file is set."""
    global _RECORDER
    if _RECORDER is not None:
        # a forked child (DataLoader worker) inherits the object but not its flusher thread
        return _RECORDER if _RECORDER._pid == os.getpid() else None
    events_file = os.environ.get("HARNESS_EVENTS_FILE")
    if not events_file:
        return None
    _RECORDER = AutoRecorder(events_file)
    return _RECORDER


def set_recorder(recorder: AutoRecorder | None) -> None:
    """Replace the process's recorder (tests)."""
    global _RECORDER
    _RECORDER = recorder
