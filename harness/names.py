"""Safe names for everything that becomes part of a path (run ids, plan ids, mode names, cache keys).

A name read from a file or a flag is joined onto a folder (``results/<mode>/<run_id>/``,
``results/plans/<plan_id>/``). One that holds ``/``, ``..``, NUL, or is absolute or too long
would make harness read or write outside the experiment, or fail deep inside the OS with a
traceback. Every such name is checked here first, and the joined path is checked to stay
inside its folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.errors import UsageError

# Letters, digits, '_', '.', '-'; starts with a letter or digit (so never '.', '..' or a dotfile);
# at most 128 characters (far below any file system's 255-byte limit, with room for suffixes).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_NAME = 128


def is_safe_name(name: object) -> bool:
    """True when ``name`` can be used as one path component anywhere harness puts it."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None and ".." not in name


def check_safe_name(name: object, what: str) -> str:
    """Return ``name`` when it is safe.

    Raises:
        ValueError: saying what is wrong with ``what`` (for pydantic validators and our errors).
    """
    if is_safe_name(name):
        return name  # type: ignore[return-value]
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string (got {type(name).__name__})")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} is {len(name)} characters long (at most {MAX_NAME})")
    raise ValueError(f"{what} {shown!r} is not a safe name: use letters, digits, '_', '.' or '-', "
                     "starting with a letter or digit, no '..'")


def inside(folder: Path, *names: str) -> Path:
    """``folder/names...`` after checking each name and that the result stays under ``folder``.

    Raises:
        ValueError: for an unsafe name or a path that leaves ``folder`` (e.g. through a symlink).
    """
    for name in names:
        check_safe_name(name, "name")
    path = folder.joinpath(*names)
    base = os.path.realpath(folder)
    if os.path.commonpath([base, os.path.realpath(path)]) != base:
        raise ValueError(f"{path} leads outside {folder}")
    return path


def path_problem(text: str) -> str | None:
    """What makes ``text`` unusable as a path on this system, or None (checked before any OS call).

    The OS answers a NUL with ``ValueError`` and a component over 255 bytes with ``ENAMETOOLONG``
    from whichever call meets it first; checking here gives one clear message instead.
    """
    if "\x00" in text:
        return "contains a NUL character"
    for part in text.split(os.sep):
        size = len(os.fsencode(part))
        if size > 255:
            return f"has a name too long for the file system ({size} bytes; at most 255)"
    if len(os.fsencode(text)) > 4095:
        return "is too long for the file system (at most 4095 bytes)"
    return None


def refuse_unsafe_paths(targets: "tuple[str, ...] | list[str]") -> None:
    """Refuse a NUL or an over-long name in a path given on the command line, before the OS meets it.

    Raises:
        UsageError: naming the path and what is wrong with it.
    """
    for target in targets:
        problem = path_problem(target)
        if problem:
            raise UsageError(f"{target[:40]!r}: the path {problem}")


def refuse_unsafe_names(**names: "str | list[str] | None") -> None:
    """Mode names and run ids given as flags become folder names: refuse '..', '/', NUL before any read.

    Raises:
        UsageError: naming the flag (``--KEY`` for each keyword).
    """
    for flag, value in names.items():
        if value is None:
            continue
        for name in value if isinstance(value, list) else [value]:
            try:
                check_safe_name(name, "name")
            except ValueError as e:
                raise UsageError(f"--{flag}: {e}") from None
            if flag != "runs" and name in ("plans", "comparison"):
                raise UsageError(f"--{flag}: {name!r} is a folder of results/, not a mode")
