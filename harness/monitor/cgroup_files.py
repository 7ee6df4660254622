"""The cgroup control files: kept open and re-read with ``pread``, and the parsers of their formats.

Split from ``cgroup`` (which reads a cgroup's figures with them); the names stay importable there.
"""

from __future__ import annotations

import os

UNLIMITED_THRESHOLD = 1 << 60


class _File:
    """A control file kept open and re-read with ``pread``; absent files read as ``None``."""

    __slots__ = ("path", "fd", "size")

    def __init__(self, path: str) -> None:
        self.path = path
        self.size = 65536  # shrunk to fit after the first read: a 64 KiB buffer a tick is not free
        try:
            self.fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = None

    def read(self) -> str | None:
        if self.fd is None:
            return None
        try:
            data = os.pread(self.fd, self.size, 0)
            if len(data) >= self.size and self.size < 65536:  # the file grew: read it whole
                data = os.pread(self.fd, 65536, 0)
            self.size = max(256, 2 * len(data))
            return data.decode("ascii", "replace")
        except OSError:
            # e.g. EOPNOTSUPP for a PSI file whose controller is disabled
            return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _first(dirs: list[str], name: str) -> _File | None:
    """The file ``name`` in the leaf directory that has it (a child may lack a controller's files)."""
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.exists(path):
            f = _File(path)
            if f.fd is not None:
                return f
    return None


def _all(dirs: list[str], name: str) -> list[_File]:
    files = [_File(os.path.join(d, name)) for d in dirs if os.path.exists(os.path.join(d, name))]
    return [f for f in files if f.fd is not None]


def parse_int(text: str | None) -> int | None:
    """An integer limit or counter; ``max``, ``-1`` and 2^60 or more read as ``None`` (unlimited)."""
    if text is None:
        return None
    text = text.strip().split()[0] if text.strip() else ""
    if text in ("", "max", "-1"):
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if value < 0 or value >= UNLIMITED_THRESHOLD:
        return None
    return value


def parse_keyed(text: str | None) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.stat``, ``memory.events``, ``oom_control``)."""
    out: dict[str, int] = {}
    if not text:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def stat_value(text: str | None, key: str) -> int | None:
    """One key of a ``key value`` file without parsing the rest (memory.stat has ~40 lines)."""
    if not text:
        return None
    at = text.find(key + " ")
    while at > 0 and text[at - 1] != "\n":  # "inactive_file" inside "total_inactive_file"
        at = text.find(key + " ", at + 1)
    if at < 0:
        return None
    end = text.find("\n", at)
    return parse_int(text[at + len(key) + 1:end if end >= 0 else None])


def parse_cpu_max(text: str | None) -> float | None:
    """v2 ``cpu.max`` (``"max 100000"`` or ``"50000 100000"``) as cores, ``None`` when unlimited."""
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cpuset(text: str | None) -> int | None:
    """Number of CPUs in a cpuset list such as ``0-3,8,10-11``."""
    if not text or not text.strip():
        return None
    count = 0
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            count += int(hi) - int(lo) + 1
        elif part:
            count += 1
    return count or None


def parse_psi(text: str | None) -> dict[str, dict[str, float]] | None:
    """A pressure file: ``{"some": {"avg10", "avg60", "avg300", "total"}, "full": {...}}``."""
    if not text:
        return None
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        values: dict[str, float] = {}
        for item in parts[1:]:
            key, _, value = item.partition("=")
            try:
                values[key] = float(value) if key != "total" else int(value)
            except ValueError:
                pass
        out[parts[0]] = values
    return out or None


def _min_limit(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
