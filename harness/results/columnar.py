"""A run's per-batch arrays as one ``.npz`` beside its results.json, so a cold compare skips the JSON parse.

Why: the seed's results.json keeps every batch as ``[index, seconds]`` (and every loss as
``[epoch, batch, value]``); parsing that into Python objects is the floor of a cold compare
(6.6 s for 10 runs of 200,000 batches). results.json stays exactly as it is, the interface of the
seed; its one writer (``results.io.write_results``) also writes ``batches-<digest>.npz`` beside it, where ``<digest>`` is the start of
the SHA-256 of that results.json's bytes. The name ties the arrays to the exact document they
mirror: a results.json that was edited, rewritten or replaced no longer matches, and readers fall
back to it, so the file can be copied, cloned or rsynced with the results and never lies.
Hashing runs at GB/s (0.2 s for 281 MB here); it is what makes the file safe to trust.

The npz holds numpy arrays and one JSON string (the document without the arrays) and is loaded
with ``allow_pickle=False``: results folders get shared, and a results file must not run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.filemode import new_file_mode
from harness.results.schema import RESULTS_FILENAME as RESULTS
from harness.run_numbers import check_run
from harness.safe_json import parse

VERSION = 1
PREFIX = "batches-"
DIGEST_CHARS = 24
# Per-batch lists of a mode, as paths inside ``modes.<mode>``: the bulk of a long run's file.
ARRAY_KEYS = (("batch_times",), ("data_wait_times",), ("batch_sizes",), ("metrics", "losses"),
              ("metrics", "accuracies"))


def digest(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in large blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def path_for(run_dir: Path, results_digest: str) -> Path:
    return Path(run_dir) / f"{PREFIX}{results_digest[:DIGEST_CHARS]}.npz"


def _numeric(value: Any) -> np.ndarray | None:
    """A list of equal-length rows of numbers (None allowed) as a 2-D float array, else None."""
    if not isinstance(value, list) or not value:
        return None
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 2 else None


def split(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The document without its per-batch lists, and those lists as arrays named ``mode/key/...``.

    Only the dicts on the way to a list are copied; ``document`` itself is left as it was.
    """
    doc = dict(document)
    arrays: dict[str, np.ndarray] = {}
    modes = doc.get("modes")
    if not isinstance(modes, dict):
        return doc, arrays
    doc["modes"] = modes = dict(modes)
    for mode in list(modes):
        if not isinstance(modes[mode], dict) or "/" in mode:
            continue
        modes[mode] = data = dict(modes[mode])
        for keys in ARRAY_KEYS:
            parent = data
            for key in keys[:-1]:
                child = parent.get(key)
                if not isinstance(child, dict):
                    parent = None
                    break
                parent[key] = parent = dict(child)
            arr = _numeric(parent.get(keys[-1])) if parent is not None else None
            if arr is not None:
                arrays["/".join((mode, *keys))] = arr
                del parent[keys[-1]]
    return doc, arrays


def write(run_dir: Path, document: dict[str, Any] | None = None) -> Path | None:
    """Write the columnar twin of ``run_dir``/results.json (atomically); remove stale twins.

    ``document``: the parsed results.json when the caller has it (saves a parse). Returns the
    file, or None when there is no results.json. Raises OSError when it cannot be written.
    """
    run_dir = Path(run_dir)
    results = run_dir / RESULTS
    if not results.is_file():
        return None
    if document is None:
        with open(results, encoding="utf-8") as f:
            document = json.load(f)
    target = path_for(run_dir, digest(results))
    doc, arrays = split(document)
    meta = json.dumps({"version": VERSION, "document": doc}, default=_plain)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(meta), **{f"a{i}": a for i, a in enumerate(arrays.values())},
                     __names__=np.array(list(arrays), dtype=str))
            os.fchmod(f.fileno(), new_file_mode())  # mkstemp's 0600 would hide it from a teammate
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for old in run_dir.glob(f"{PREFIX}*.npz"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def write_quietly(run_dir: Path, document: dict[str, Any] | None = None) -> bool:
    """:func:`write`, for callers to whom the twin is only an optimisation: False instead of raising."""
    try:
        return write(run_dir, document) is not None
    except (OSError, ValueError, TypeError):
        return False


def twin_size(run_dir: Path) -> int:
    """Bytes of the run's twin(s) (0 when none)."""
    return sum(p.stat().st_size for p in Path(run_dir).glob(f"{PREFIX}*.npz"))


def _plain(value: Any) -> Any:
    """What results.json's writer makes of numpy scalars, paths and the like."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read(run_dir: Path, validate: Callable[[dict[str, Any], Path], None] | None = None) -> dict[str, Any] | None:
    """results.json's document with numpy arrays in place of its per-batch lists, from the twin.

    None when there is no twin for the results.json as it is now (absent, stale, corrupt, or
    from another version): the caller then reads results.json itself. ``validate(document,
    path)`` checks the document (before the arrays go back in) and may raise.
    """
    run_dir = Path(run_dir)
    results = run_dir / RESULTS
    try:
        candidates = list(run_dir.glob(f"{PREFIX}*.npz"))
        if not candidates or not results.is_file():
            return None
        target = path_for(run_dir, digest(results))
        if target not in candidates:
            return None
        with np.load(target, allow_pickle=False) as npz:
            meta = parse(str(npz["__meta__"]), max_depth=None)  # no NaN; deep nesting refused, not raised
            if not isinstance(meta, dict) or meta.get("version") != VERSION:
                return None
            names = [str(n) for n in npz["__names__"]]
            arrays = {name: npz[f"a{i}"] for i, name in enumerate(names)}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None  # absent, cut short, not ours, or holding pickles: results.json will serve
    doc = meta.get("document")
    if not isinstance(doc, dict):
        return None
    if validate is not None:
        validate(doc, results)
    try:
        for name, arr in arrays.items():
            mode, *keys = name.split("/")
            parent = doc["modes"][mode]
            for key in keys[:-1]:
                parent = parent.setdefault(key, {})
            parent[keys[-1]] = arr
    except (KeyError, TypeError, AttributeError):
        return None
    check_run(doc, results)  # the arrays too: a forged twin must not bring impossible numbers in
    return doc
