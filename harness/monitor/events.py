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
        from harness.nofollow import open_file

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a link, never blocked by a FIFO: the run folder is writable by the script.
        self._fd: int | None = open_file(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self.dropped = 0  # records lost to a failed write (full disk): measuring never stops training
        self.drop_reason: str | None = None  # why, e.g. "no space left on device"
        self._torn = False  # a write failed part-way: the file ends inside a line
        self._unreported = 0  # dropped records not yet announced by a "dropped" record
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
        """Write everything queued so far in one ``write()``.

        A write that fails (disk full, quota, I/O error) drops the records, counts them in
        ``dropped`` and never raises: training goes on. The next write that succeeds starts
        with a ``dropped`` record saying how many were lost and why.
        """
        with self._lock:
            if self._fd is None:
                return
            records, self._pending = self._pending, []
            for source in self._sources:
                records.extend(source())
            if not records:
                return
            if self._unreported:
                records.insert(0, {"t": time.time(), "m": time.monotonic(), "type": "dropped",
                                   "records": self._unreported, "reason": self.drop_reason})
            # After a torn write the file ends inside a line: end it, so it costs one bad line only.
            data = ("\n" if self._torn else "").encode() + "".join(encode(r) for r in records).encode("utf-8")
            view = memoryview(data)
            try:
                while view:  # a regular file takes it in one go unless the disk is full
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as e:
                self._torn = self._torn or len(view) < len(data)
                lost = len(records) - (1 if self._unreported else 0)
                self.dropped += lost
                self._unreported += lost
                self.drop_reason = self.drop_reason or (e.strerror or str(e)).lower()
                return
            self._torn = False
            self._unreported = 0

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
            self.flush()


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
