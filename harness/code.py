"""What an experiment's code is: one definition for the image's content hash and the run fingerprint.

The code is every file of the experiment folder that ``.dockerignore`` does not exclude
(Docker's own pattern rules, through the docker SDK), less what is never code: run outputs
and logs, caches, the data folder and results. Those are removed after ``.dockerignore``
is applied, so a ``!`` line cannot bring them back; otherwise a ``notes.log`` written between
two runs would change the image and make ``compare`` report identical code as different.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from harness.config import CONFIG_FILENAME

# Folders that are never code when they sit at the top of the experiment (a package may
# well have a ``src/data/`` module, so deeper ones are left to .dockerignore).
TOP_LEVEL_OUTPUTS = frozenset({"outputs", "checkpoints", "wandb", "lightning_logs", "mlruns", "results", "data",
                               ".git"})
# Folders that are never code at any depth.
ANY_DEPTH_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".git"})
# File suffixes and names that are never code at any depth.
ANY_DEPTH_SUFFIXES = (".log", ".pyc")
ANY_DEPTH_NAMES = frozenset({".DS_Store"})
_BLOCK = 1 << 20


def _data_dir(experiment_dir: Path) -> str | None:
    """The config's ``data_dir`` (mounted at run time, maybe huge), when it names a folder inside."""
    config = experiment_dir / CONFIG_FILENAME
    try:
        value = json.loads(config.read_text()).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(value, str) or not value.strip("/"):
        return None
    return PurePosixPath(value.strip("/")).as_posix()


def _ignore_patterns(experiment_dir: Path) -> list[str]:
    ignore = experiment_dir / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (ln.strip() for ln in ignore.read_text(errors="replace").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def is_never_code(rel: str, data_dir: str | None = None) -> bool:
    """True for a relative POSIX path that is an output, a log, a cache, data or results."""
    parts = PurePosixPath(rel).parts
    if not parts:
        return True
    if parts[0] in TOP_LEVEL_OUTPUTS or ANY_DEPTH_DIRS.intersection(parts[:-1]):
        return True
    if data_dir is not None and (rel == data_dir or rel.startswith(data_dir + "/")):
        return True
    name = parts[-1]
    return name in ANY_DEPTH_NAMES or name.endswith(ANY_DEPTH_SUFFIXES)


def code_files(experiment_dir: Path) -> list[str]:
    """Sorted POSIX paths, relative to ``experiment_dir``, of the files that make up the experiment's code.

    Regular files only (symlinks are not followed: they may point at data outside).
    """
    from docker.utils.build import exclude_paths

    root = Path(experiment_dir)
    data_dir = _data_dir(root)
    always = ["**/__pycache__", "**/.ipynb_checkpoints", ".git", *sorted(TOP_LEVEL_OUTPUTS)]
    if data_dir is not None:
        always.append(data_dir)  # pruned early: exclude_paths never walks a huge data folder
    paths = exclude_paths(str(root), always + _ignore_patterns(root))
    kept = []
    for rel in paths:
        rel = PurePosixPath(rel).as_posix()
        path = root / rel
        if is_never_code(rel, data_dir) or path.is_symlink() or not path.is_file():
            continue
        kept.append(rel)
    return sorted(kept)


def file_digest(path: Path) -> str:
    """sha256 hex of one file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def code_digests(experiment_dir: Path) -> dict[str, str]:
    """Relative path -> sha256 hex of its bytes, for every file of :func:`code_files` (sorted by path)."""
    root = Path(experiment_dir)
    return {rel: file_digest(root / rel) for rel in code_files(root)}


def combine_digests(digests: dict[str, str]) -> str:
    """One sha256 over the sorted (path, digest) pairs: equal exactly when the code is equal."""
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(rel.encode() + b"\0" + digests[rel].encode() + b"\n")
    return h.hexdigest()


def code_digest(experiment_dir: Path) -> str:
    """One sha256 over the experiment's code (see :func:`code_digests`)."""
    return combine_digests(code_digests(experiment_dir))


def code_record(experiment_dir: Path) -> dict[str, object]:
    """What a run's record keeps of its code: the digest and the per-file digests (compare names the files)."""
    digests = code_digests(experiment_dir)
    return {"digest": combine_digests(digests), "files": digests}


def differing_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Paths added, removed or changed between two :func:`code_digests` maps, sorted."""
    return sorted(rel for rel in set(old) | set(new) if old.get(rel) != new.get(rel))


__all__ = ["code_files", "code_digests", "code_digest", "code_record", "combine_digests", "differing_files", "file_digest",
           "is_never_code"]
