"""A cache of reduced runs, so the second ``harness compare`` of big runs skips the JSON parse.

Parsing JSON is most of compare's cost on long runs (a 200,000-batch results.json takes ~0.5 s
of ``json.load`` alone). A completed run never changes, so its reduction is kept in
``results/comparison/.cache/<mode>/<run_id>.npz``, keyed by the results file's size and mtime
and by this module's version; any mismatch, or an unreadable cache file, means: read the JSON
again. The cache is numpy arrays plus a JSON string, loaded with ``allow_pickle=False``: results
folders get shared, and a cache must not be a way to run code.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compare import stats
from harness.names import is_safe_name
from harness.results.io import json_default, write_atomic
from harness.safe_json import parse

if TYPE_CHECKING:
    from harness.compare.reduce import RunData

CACHE_VERSION = 5
ARRAYS = ("batch_index", "step_times", "batch_dt", "data_wait", "batch_sizes", "losses", "accuracies")
META = ("run_id", "mode", "seed", "started_at", "backend", "image", "node", "environment", "config",
        "experiment_name", "values", "resource_usage", "custom_metrics", "summary", "rebuilt", "parallel",
        "hardware", "record", "fingerprint", "plan_id", "ended_at", "host_load")


def cache_file(experiment_dir: Path, mode: str, run_dir: Path) -> Path:
    return Path(experiment_dir) / "results" / "comparison" / ".cache" / mode / f"{run_dir.name}.npz"


def _key(results_json: Path) -> list[int] | None:
    try:
        st = results_json.stat()
    except OSError:
        return None
    return [CACHE_VERSION, st.st_size, st.st_mtime_ns]


def load_cached(experiment_dir: Path, mode: str, run_dir: Path) -> RunData | None:
    """The cached reduction of ``run_dir``, or None when there is none or it is stale."""
    from harness.compare.reduce import RunData

    path = cache_file(experiment_dir, mode, run_dir)
    key = _key(run_dir / "results.json")
    if key is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = parse(str(npz["meta"]))  # no NaN, no deep nesting: a shared folder may hold anything
            if not isinstance(meta, dict) or meta.get("key") != key:
                return None
            arrays = {name: np.asarray(npz[name], dtype=float) for name in ARRAYS}
        if not _usable(meta, arrays, run_dir, mode):
            return None
        steps = stats.StepStats(**meta["steps"]) if meta.get("steps") else None
        fields: dict[str, Any] = {name: meta[name] for name in META}
        return RunData(path=run_dir, steps=steps, **fields, **arrays)
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, RecursionError, zipfile.BadZipFile):
        return None  # corrupt, from another version, or forged: fall back to the JSON


def _finite_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and math.isfinite(value))


def _usable(meta: Any, arrays: dict[str, np.ndarray], run_dir: Path, mode: str) -> bool:
    """A cache entry can be trusted as far as the numbers a verdict uses: its own run, finite, possible.

    Results folders are shared and edited: an entry whose key matches can still hold anything, so
    it is held to what a reduction of a valid results.json could give, or ignored.
    """
    if not isinstance(meta, dict) or not all(name in meta for name in META):
        return False
    if meta["run_id"] != run_dir.name or meta["mode"] != mode or not is_safe_name(meta["run_id"]):
        return False
    if not (meta["seed"] is None or (isinstance(meta["seed"], int) and not isinstance(meta["seed"], bool))):
        return False
    values = meta["values"]  # reduce_run writes floats (or None) only: an int here was not written by us
    if not isinstance(values, dict) or not all(v is None or (isinstance(v, float) and math.isfinite(v))
                                               for v in values.values()):
        return False
    for name in ("environment", "config", "resource_usage", "custom_metrics", "summary"):
        if not isinstance(meta[name], dict):
            return False
    steps = meta.get("steps")
    if steps is not None:
        if not isinstance(steps, dict) or not all(_finite_or_none(v) for v in steps.values()):
            return False
        counts = ("n_batches", "warmup_batches", "steady_batches", "outliers")
        if not all(isinstance(steps.get(k), int) and steps[k] >= 0 for k in counts):
            return False
    if not _finite_or_none(meta["started_at"]) or not isinstance(meta["rebuilt"], bool):
        return False
    n = arrays["batch_dt"].shape
    if any(arrays[a].ndim != 1 or arrays[a].shape != n for a in ("batch_index", "step_times", "batch_dt",
                                                                  "data_wait", "batch_sizes")):
        return False
    for a in ("batch_index", "step_times", "batch_dt"):
        if not np.isfinite(arrays[a]).all() or (arrays[a] < 0).any():
            return False
    return all(arrays[a].ndim == 2 and arrays[a].shape[1] == 3 for a in ("losses", "accuracies"))


def store(experiment_dir: Path, run: RunData) -> None:
    """Cache a completed run's reduction; failures are ignored (the cache is only an optimisation)."""
    key = _key(run.path / "results.json")
    if key is None or run.rebuilt:
        return
    path = cache_file(experiment_dir, run.mode, run.path)
    meta = {name: getattr(run, name) for name in META}
    meta["steps"] = run.steps.to_dict() if run.steps else None
    meta["key"] = key
    try:
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta, default=json_default)), **{n: getattr(run, n) for n in ARRAYS})
        write_atomic(path, buf.getvalue())
    except (OSError, TypeError, ValueError):
        pass


def warm(experiment_dir: Path, mode: str, run_dir: Path) -> bool:
    """Reduce a run that just completed into the cache; True when the cache now holds it.

    ``harness run`` calls this as each run ends, so the first ``harness compare`` after it
    parses no large results.json (the seed's per-batch pairs make a long run's JSON slow
    to parse: ~0.7 s per 200,000 batches). Failures are ignored: the cache is an optimisation.
    """
    from harness.compare.reduce import reduce_run
    from harness.errors import ResultsError
    from harness.compare.reduce import load_run_fast as load_run  # the columnar twin when there is one

    if load_cached(experiment_dir, mode, run_dir) is not None:
        return True
    try:
        result = load_run(run_dir)
    except ResultsError:
        return False
    if result.status != "completed" or result.rebuilt:
        return False
    store(experiment_dir, reduce_run(result))
    return load_cached(experiment_dir, mode, run_dir) is not None
