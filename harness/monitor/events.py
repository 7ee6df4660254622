"""The ``events.jsonl`` writer: buffered appends that survive SIGKILL up to the last flush.

The agent and the training script share one file. Each flush is a single ``write()`` of
whole lines to a descriptor opened with ``O_APPEND``, so two writers never interleave
inside a line and a reader sees at worst a cut last line after a crash (readers drop it).
The hot path (``emit`` / the monitor's batch list) only appends to a list; JSON encoding
happens on a background thread. The format itself is ``harness.results.events``.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.results.events import encode

FLUSH_INTERVAL = 0.5  # seconds; the contract promises at least one flush per second

Source = Callable[[], Iterable[dict[str, Any]]]


class EventWriter:
    """Append records to ``events.jsonl``; a daemon thread flushes every ``flush_interval`` seconds.

    ``emit`` takes a lock (cheap, not per batch); high-rate producers register a *source*
    instead, a callable that returns the records produced since its last call and is
    polled on every flush.
    """

    def __init__(self, path: Path | str, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pending: list[dict[str, Any]] = []
        self._sources: list[Source] = []
        self._lock = threading.Lock()  # guards _pending and the descriptor
        self._stop = threading.Event()
        self._interval = flush_interval
        self._thread = threading.Thread(target=self._loop, name="harness-events", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Queue one record stamped with wall (``t``) and monotonic (``m``) time."""
        record = {"t": time.time(), "m": time.monotonic(), "type": type, **fields}
        with self._lock:
            self._pending.append(record)
        return record

    def append(self, record: dict[str, Any]) -> None:
        """Queue a record that already carries its ``t``, ``m`` and ``type`` (a resource sample)."""
        with self._lock:
            self._pending.append(record)

    def add_source(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def flush(self) -> None:
        """Write everything queued so far in one ``write()``."""
        with self._lock:
            if self._fd is None:
                return
            records, self._pending = self._pending, []
            for source in self._sources:
                records.extend(source())
            if not records:
                return
            data = "".join(encode(r) for r in records).encode("utf-8")
            view = memoryview(data)
            while view:  # a regular file takes it in one go unless the disk is full
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        """Stop the flusher and write what is left; safe to call twice."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except OSError:
                # Disk full or the folder vanished: keep training; the next flush retries.
                pass


_LIVE: "weakref.WeakSet[EventWriter]" = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    # The flusher is a daemon thread and dies with the interpreter: a script that ends (or
    # raises) without close() must still get its last half second of events onto disk.
    for writer in list(_LIVE):
        try:
            writer.flush()
        except OSError:
            pass
