"""Refuse runs whose numbers cannot be true, so that no verdict rests on an impossible number.

A results.json (or an events.jsonl it is rebuilt from) may come from a crashed writer, a
hand edit or a hostile script. A batch that took NaN, infinite, negative or 1e308 seconds, or a
``wall_time`` that is text, is not a slow run: it is a broken file. Such a run is refused with a
:class:`~harness.errors.ResultsError` naming the field, and ``compare`` lists it under
"Skipped (unreadable results)" like any unreadable run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ResultsError

# No training batch takes a week; a figure beyond this is a broken file, and would overflow sums.
MAX_SECONDS = 7 * 24 * 3600.0
# A run's wall time: ten years is more than any training run; beyond it the file is broken.
MAX_WALL_TIME = 10 * 365 * 24 * 3600.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_wall_time(run: dict[str, Any], path: Path) -> None:
    """``run.wall_time`` is absent, null, or a finite number of seconds >= 0.

    Raises:
        ResultsError: naming the field and the value.
    """
    value = run.get("wall_time")
    if value is None:
        return
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_WALL_TIME:
        shown = repr(value) if not isinstance(value, str) or len(value) < 30 else repr(value[:30] + "...")
        raise ResultsError(path, f"run.wall_time is {shown}, not a number of seconds")


def check_pairs(pairs: Any, where: str, path: Path) -> np.ndarray:
    """``[[index, seconds], ...]`` as an (n, 2) float array, every value a finite, possible number.

    Raises:
        ResultsError: naming the field and the first impossible batch.
    """
    if isinstance(pairs, np.ndarray):  # from the columnar twin: same rules, without the type walk
        if pairs.size == 0:
            return np.empty((0, 2))
        if pairs.ndim != 2 or pairs.shape[1] < 2 or pairs.dtype.kind not in "iuf":
            raise ResultsError(path, f"{where} is not a list of [index, seconds] pairs")
        return _possible(pairs[:, :2].astype(float), lambda k: pairs[k, 0], where, path)
    if pairs is None or pairs == []:
        return np.empty((0, 2))
    if not isinstance(pairs, list):
        raise ResultsError(path, f"{where} is {type(pairs).__name__}, not a list of [index, seconds] pairs")
    for k, pair in enumerate(pairs):
        # Booleans and text pass numpy's float conversion or fail it obscurely: look at the types first.
        if not (isinstance(pair, list) and len(pair) >= 2 and _is_number(pair[0]) and _is_number(pair[1])):
            shown = repr(pair) if len(repr(pair)) < 40 else repr(pair)[:40] + "..."
            raise ResultsError(path, f"{where}[{k}] is {shown}, not an [index, seconds] pair of numbers")
    arr = np.array(pairs, dtype=float) if all(len(p) == 2 for p in pairs) else \
        np.array([p[:2] for p in pairs], dtype=float)
    return _possible(arr, lambda k: pairs[k][0], where, path)


def _possible(arr: np.ndarray, index_of: Any, where: str, path: Path) -> np.ndarray:
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 1] < 0) | (arr[:, 1] > MAX_SECONDS)
    if bad.any():
        k = int(np.argmax(bad))
        raise ResultsError(path, f"{where}: batch {index_of(k)!r} took {_seconds(arr[k, 1])} "
                                 "seconds, which cannot be true")
    return arr


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite" if value > 0 else "-infinite"
    return f"{value:g}"


def check_run(data: dict[str, Any], path: Path) -> None:
    """The numbers of one (already structurally checked) results document that a verdict uses.

    Raises:
        ResultsError: for an impossible batch time, data wait or wall time.
    """
    run = data["run"]
    check_wall_time(run, path)
    seed = run.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ResultsError(path, f"run.seed is {seed!r}, not an integer >= 0")
    mode = data["modes"][run["mode"]]
    check_pairs(mode.get("batch_times"), f"modes.{run['mode']}.batch_times", path)
    waits = mode.get("data_wait_times")
    if isinstance(waits, np.ndarray) and waits.ndim == 2 and waits.shape[1] >= 2:
        check_pairs(waits[~np.isnan(waits[:, 1].astype(float))], f"modes.{run['mode']}.data_wait_times", path)
    elif isinstance(waits, list):
        # null waits are allowed ("unknown"); anything else must be a possible number of seconds.
        known = [p for p in waits if not (isinstance(p, list) and len(p) >= 2 and p[1] is None)]
        check_pairs(known, f"modes.{run['mode']}.data_wait_times", path)
