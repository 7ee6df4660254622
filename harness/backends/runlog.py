"""A run's ``stdout.log`` on the host: created before the run starts, written through that descriptor.

The run folder is writable by the run (a container mounts it), so the log is never opened by name
once the run has started: a name swapped for a link then only hides our file, it never sends the
run's output into a host file (see harness.nofollow). A write that fails (full disk) drops that
output, remembers why, and the run goes on; the output still reaches the terminal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from harness.nofollow import create_append

Echo = Callable[[str], None]


class RunLog:
    """Appends a run's output to stdout.log and passes it on to ``echo`` line by line."""

    def __init__(self, path: Path, echo: Echo | None = None) -> None:
        self.path = Path(path)
        self.echo = echo
        self.error: str | None = None  # why some output could not be written, e.g. "no space left on device"
        self.dropped_bytes = 0
        self._fd: int | None = create_append(self.path)
        self._pending = b""

    def write(self, chunk: bytes) -> None:
        """Log ``chunk`` (dropping it if the disk refuses) and echo its complete lines."""
        self._write(chunk)
        if self.echo is None:
            return
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self.echo(line.decode("utf-8", "replace"))

    def _write(self, chunk: bytes) -> None:
        if self._fd is None or not chunk:
            return
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self.dropped_bytes += len(view)
            self.error = self.error or (e.strerror or str(e)).lower()

    def close(self) -> None:
        """Echo a last unfinished line and close the file; safe to call twice."""
        if self.echo is not None and self._pending:
            self.echo(self._pending.decode("utf-8", "replace"))
        self._pending = b""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
