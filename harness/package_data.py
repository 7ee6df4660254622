"""Locate the templates and Dockerfiles, wherever harness is installed.

An installed wheel carries them in ``harness/_data``; an editable install or a
checkout reads them from the repository's top-level ``templates/`` and ``docker/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder ``name`` ("templates" or "docker") that ships with harness.

    Raises:
        FileNotFoundError: when neither the wheel copy nor the checkout copy exists.
    """
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"harness is missing its {name}/ folder; reinstall it")


def templates_dir() -> Path:
    return data_dir("templates")


def docker_dir() -> Path:
    return data_dir("docker")


def repo_root() -> Path | None:
    """The checkout harness runs from, or None when installed from a wheel."""
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() else None
