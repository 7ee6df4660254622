"""Files in a folder that someone else can write (a run folder, mounted read-write into a container).

Whoever writes the folder can swap a name for a symlink to a host file, a FIFO or a folder at any
moment, so checking a name and then opening it is no defence. Here every file is opened with
``openat`` relative to a descriptor of its folder (opened ``O_DIRECTORY | O_NOFOLLOW``), itself with
``O_NOFOLLOW`` (a link is refused, never followed) and ``O_NONBLOCK`` (a FIFO cannot hang us), and
then checked to be a regular file through the descriptor we hold. A file the host writes all run
long (stdout.log) is created before the run starts (``O_EXCL``) and written through that descriptor:
swapping the name afterwards only hides the log, it never redirects it. Standard library only (the
agent imports this inside the container).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotARegularFile(OSError):
    """Raised when a name in a writable folder is a link, FIFO, folder or device instead of a file."""


def open_dir(path: Path | str) -> int:
    """A descriptor of the folder ``path`` (its last part must not be a link).

    Raises:
        OSError: ``ELOOP`` when it is a link, ``ENOTDIR`` when not a folder, ``ENOENT`` when absent.
    """
    return os.open(path, _DIR_FLAGS)


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def open_at(dir_fd: int, name: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``name`` in the folder ``dir_fd`` without following a link; regular files only.

    Raises:
        NotARegularFile: the name is a link, FIFO, folder or other special file.
        OSError: as ``open`` otherwise (``ENOENT``, ``EEXIST`` with ``O_EXCL``, ``ENOSPC``...).
    """
    if "/" in name:
        raise ValueError(f"a name, not a path: {name!r}")
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            try:
                what = _describe(os.lstat(name, dir_fd=dir_fd).st_mode)
            except OSError:
                what = "not a regular file"
            raise NotARegularFile(e.errno, f"{name} is {what}", name) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, f"{name} is {_describe(st.st_mode)}", name)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def open_file(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """:func:`open_at` for ``path``: its folder is opened ``O_NOFOLLOW``, then the name in it."""
    path = Path(path)
    dir_fd = open_dir(path.parent)
    try:
        return open_at(dir_fd, path.name, flags, mode)
    finally:
        os.close(dir_fd)


def read_bytes(path: Path | str, *, tail: int | None = None, limit: int | None = None) -> bytes:
    """The file's bytes (only the last ``tail`` bytes, or at most the first ``limit``), never via a link.

    Raises:
        NotARegularFile, OSError: as :func:`open_file`.
    """
    fd = open_file(path)
    with os.fdopen(fd, "rb") as f:
        if tail is not None:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail))
            return f.read()
        return f.read() if limit is None else f.read(limit)


def read_text(path: Path | str, encoding: str = "utf-8") -> str:
    """The file's text, never via a link (see :func:`read_bytes`)."""
    return read_bytes(path).decode(encoding)


def create_append(path: Path | str, mode: int = 0o644) -> int:
    """Create ``path`` (it must not exist: no link, no file planted before us) for appending.

    Raises:
        FileExistsError: something is already there (a link counts).
    """
    return open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, mode)
