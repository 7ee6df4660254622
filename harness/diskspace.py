"""Room to record a run when its disk is full: a reserve file given back when a write fails.

A run can fill the results folder's filesystem (a checkpoint, a cache, the events themselves).
Its container is gone by the time harness writes what happened, but the disk stays full, and a
plan whose state cannot be saved loses its place. So a plan keeps a small reserve file next to
its state; a write that fails with "no space left" deletes the reserve and tries once more.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable, TypeVar

RESERVE_FILENAME = "reserve"
RESERVE_BYTES = 1 << 20  # room for state.json, errors.log and a run's results.json many times over
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_REASON = "no space left on device"

T = TypeVar("T")


def is_no_space(err: BaseException) -> bool:
    """Whether ``err`` says the filesystem (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in NO_SPACE


class Reserve:
    """A file of ``size`` bytes that can be deleted to make room (best effort: never raises)."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = Path(path)
        self.size = size

    def ensure(self) -> bool:
        """Create the reserve when it is missing; False when there is no room for it."""
        try:
            if self.path.is_file() and self.path.stat().st_size >= self.size:
                return True
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)  # really allocated, unlike a sparse file
            return True
        except OSError:
            self._unlink()
            return False
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Delete the reserve; True when that freed something."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        return self._unlink() and size > 0

    def _unlink(self) -> bool:
        try:
            self.path.unlink()
            return True
        except OSError:
            return False


def with_room(write: Callable[[], T], reserve: Reserve | None) -> T:
    """``write()``; when it fails for lack of space, release ``reserve`` and try once more.

    Raises:
        OSError: as ``write`` raised it, when there is no reserve to release or the retry fails.
    """
    try:
        return write()
    except OSError as e:
        if not is_no_space(e) or reserve is None or not reserve.release():
            raise
    return write()
