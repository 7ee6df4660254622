"""One run reduced for comparison: the metrics compare knows, and ``reduce_run`` (results.json -> arrays).

A reduction is what the compare cache stores (``cache``) and what the statistics read
(``analysis``); it depends on nothing else in compare but ``stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.compare import stats
from harness.errors import ResultsError
from harness.results.load import RunResult, load_run
from harness.results.schema import validate_results
from harness.safe_json import one_line

DEFAULT_NOISE_BAND = 0.02
UNSTABLE_SPREAD = 0.10


# ----------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricSpec:
    """What one per-run number means and which direction is better."""

    key: str
    label: str
    unit: str  # "samples/s", "s", "fraction", "cores", "bytes", "MB", "%", ""
    better: str | None  # "higher", "lower" or None (no direction)
    group: str  # "speed", "resources", "quality"


SPEED_METRICS = (
    MetricSpec("throughput", "Throughput (steady)", "samples/s", "higher", "speed"),
    MetricSpec("step_median", "Median step (steady)", "s", "lower", "speed"),
    MetricSpec("total_time", "End-to-end time", "s", "lower", "speed"),
)
DESCRIPTIVE_METRICS = (
    MetricSpec("step_mean", "Mean step time", "s", "lower", "speed"),
    MetricSpec("step_p95", "p95 step time", "s", "lower", "speed"),
    MetricSpec("warmup_batches", "Warm-up batches (detected)", "", None, "speed"),
    MetricSpec("warmup_cost", "Warm-up cost", "s", "lower", "speed"),
    MetricSpec("data_wait_fraction", "Data-wait fraction", "fraction", "lower", "resources"),
    MetricSpec("cpu_cores", "CPU cores used (mean)", "cores", None, "resources"),
    MetricSpec("cpu_percent", "CPU % of limit (mean)", "%", None, "resources"),
    MetricSpec("cpu_throttled", "CPU throttled periods", "fraction", "lower", "resources"),
    MetricSpec("mem_peak", "Peak memory", "bytes", "lower", "resources"),
    MetricSpec("mem_mean", "Mean memory", "bytes", "lower", "resources"),
    MetricSpec("gpu_util", "GPU utilization (mean)", "%", None, "resources"),
    MetricSpec("gpu_mem_peak", "GPU memory (peak)", "MB", "lower", "resources"),
    MetricSpec("loss_final", "Final loss", "", "lower", "quality"),
    MetricSpec("loss_best", "Best loss", "", "lower", "quality"),
    MetricSpec("acc_final", "Final accuracy", "", "higher", "quality"),
    MetricSpec("acc_best", "Best accuracy", "", "higher", "quality"),
)
ALL_METRICS = {m.key: m for m in SPEED_METRICS + DESCRIPTIVE_METRICS}


# ----------------------------------------------------------------------------- one run


@dataclass
class RunData:
    """One completed run reduced for comparison; arrays are numpy, dicts are small."""

    run_id: str
    mode: str
    seed: int | None
    path: Path
    started_at: float | None
    backend: str | None
    image: str | None
    node: str | None
    environment: dict[str, Any]
    config: dict[str, Any]
    experiment_name: str
    values: dict[str, float | None]
    steps: stats.StepStats | None
    batch_index: np.ndarray  # global batch indices
    step_times: np.ndarray  # dt + data wait, seconds
    batch_dt: np.ndarray  # dt as recorded
    data_wait: np.ndarray  # NaN where unknown
    batch_sizes: np.ndarray  # NaN where unknown
    losses: np.ndarray  # (n, 3) epoch, batch, value
    accuracies: np.ndarray  # (n, 3)
    resource_usage: dict[str, Any]
    custom_metrics: dict[str, Any]
    summary: dict[str, Any]
    rebuilt: bool = False
    parallel: dict[str, Any] | None = None  # set when the plan ran this run beside others
    hardware: dict[str, Any] | None = None  # the node's machine, recorded by --executor ray
    record: dict[str, Any] = field(default_factory=dict)  # what the backend recorded: cpu_source, limits, code, ray
    fingerprint: dict[str, Any] | None = None  # what ran (harness.fingerprint); None from an older harness
    plan_id: str | None = None
    ended_at: float | None = None
    host_load: dict[str, Any] | None = None  # what else ran on the host (harness.hostload)

    @property
    def unstable(self) -> bool:
        return self.steps is not None and math.isfinite(self.steps.spread) and self.steps.spread > UNSTABLE_SPREAD


def as_array(pairs: Any, width: int) -> np.ndarray:
    """[[i, v], ...] (or the same as an array, from the columnar twin) → float array (n, width).

    None becomes NaN; malformed → empty.
    """
    if isinstance(pairs, np.ndarray):
        ok = pairs.ndim == 2 and pairs.shape[0] > 0 and pairs.shape[1] >= width
        return pairs[:, :width].astype(float, copy=False) if ok else np.empty((0, width))
    if not isinstance(pairs, list) or not pairs:
        return np.empty((0, width))
    try:
        arr = np.array(pairs, dtype=float)
    except (TypeError, ValueError):
        return np.empty((0, width))
    if arr.ndim != 2 or arr.shape[1] < width:
        return np.empty((0, width))
    return arr[:, :width]


def _aligned(index: np.ndarray, pairs: Any) -> np.ndarray:
    """Values of [[i, v]] placed at the positions of ``index`` (NaN where missing)."""
    arr = as_array(pairs, 2)
    out = np.full(index.shape, np.nan)
    if arr.size == 0 or index.size == 0:
        return out
    if arr.shape[0] == index.shape[0] and np.array_equal(arr[:, 0], index):
        return arr[:, 1].copy()
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    pos = np.searchsorted(sorted_index, arr[:, 0])
    ok = (pos < sorted_index.size) & (sorted_index[np.minimum(pos, sorted_index.size - 1)] == arr[:, 0])
    out[order[pos[ok]]] = arr[ok, 1]
    return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _series_mean(series: Any) -> float | None:
    arr = as_array(series, 2)
    vals = arr[:, 1][np.isfinite(arr[:, 1])] if arr.size else arr
    return float(vals.mean()) if vals.size else None


def _series_max(series: Any) -> float | None:
    arr = as_array(series, 2)
    vals = arr[:, 1][np.isfinite(arr[:, 1])] if arr.size else arr
    return float(vals.max()) if vals.size else None


def _batches(result: RunResult) -> tuple[np.ndarray, ...]:
    """(index, dt, wait, sizes, step) per batch, bad rows dropped; step = dt + data wait.

    Raises:
        ResultsError: when the per-batch data cannot be read as numbers.
    """
    mode_data = result.mode_data
    bt = as_array(mode_data.get("batch_times"), 2)
    raw_times = mode_data.get("batch_times")
    if raw_times is not None and len(raw_times) and bt.size == 0:
        raise ResultsError(result.path / "results.json", f"modes.{result.mode}.batch_times is not a list of "
                                                         "[index, seconds] pairs")
    index = bt[:, 0]
    dt = bt[:, 1]
    wait = _aligned(index, mode_data.get("data_wait_times"))
    sizes = _aligned(index, mode_data.get("batch_sizes"))
    good = np.isfinite(dt) & (dt >= 0)
    if not good.all():
        index, dt, wait, sizes = index[good], dt[good], wait[good], sizes[good]
    return index, dt, wait, sizes, dt + np.nan_to_num(wait, nan=0.0)


def _step_stats(step: np.ndarray, wait: np.ndarray, sizes: np.ndarray) -> stats.StepStats | None:
    positive = step > 0
    if positive.sum() < 1:
        return None
    has_sizes = bool(np.all(np.isfinite(sizes))) and sizes.size > 0
    return stats.reduce_steps(step[positive], wait[positive] if np.isfinite(wait).any() else None,
                              sizes[positive] if has_sizes else None)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _speed_values(values: dict[str, float | None], steps: stats.StepStats | None, summary: dict[str, Any],
                  run: dict[str, Any]) -> None:
    if steps is not None:
        values.update(throughput=steps.throughput, step_median=steps.median_s, step_mean=steps.mean_s,
                      step_p95=steps.p95_s, warmup_batches=float(steps.warmup_batches),
                      warmup_cost=steps.warmup_cost_s, data_wait_fraction=steps.data_wait_fraction)
    else:
        values["throughput"] = _num(summary.get("throughput"))
    if values["data_wait_fraction"] is None:
        values["data_wait_fraction"] = _num(summary.get("data_wait_fraction"))
    values["total_time"] = _num(summary.get("total_time")) or _num(run.get("wall_time"))


def _resource_values(values: dict[str, float | None], summary: dict[str, Any], ru: dict[str, Any]) -> None:
    cpu = _dict(summary.get("cpu"))
    values["cpu_cores"] = _num(cpu.get("mean_cores")) if cpu else _series_mean(ru.get("cpu_cores"))
    if values["cpu_cores"] is None:
        values["cpu_cores"] = _series_mean(ru.get("cpu_cores"))
    values["cpu_percent"] = _num(cpu.get("mean_percent_of_limit")) or _series_mean(ru.get("cpu_usage"))
    values["cpu_throttled"] = _num(cpu.get("throttled_fraction"))
    if values["cpu_throttled"] is None:
        values["cpu_throttled"] = _series_mean(ru.get("cpu_throttled"))
    mem = _dict(summary.get("memory"))
    values["mem_peak"] = _num(mem.get("peak_bytes")) or _series_max(ru.get("memory_bytes"))
    values["mem_mean"] = _num(mem.get("mean_bytes")) or _series_mean(ru.get("memory_bytes"))
    gpu_util = [m for m in (_series_mean(s) for s in (ru.get("gpu_usage") or {}).values()) if m is not None]
    gpu_mem = [m for m in (_series_max(s) for s in (ru.get("gpu_memory") or {}).values()) if m is not None]
    values["gpu_util"] = float(np.mean(gpu_util)) if gpu_util else None
    values["gpu_mem_peak"] = float(np.sum(gpu_mem)) if gpu_mem else None


def _quality_values(values: dict[str, float | None], summary: dict[str, Any], losses: np.ndarray,
                    accs: np.ndarray) -> None:
    loss_vals = losses[:, 2][np.isfinite(losses[:, 2])] if losses.size else losses
    if loss_vals.size:
        values["loss_final"], values["loss_best"] = float(loss_vals[-1]), float(loss_vals.min())
    else:
        ls = _dict(summary.get("loss"))
        values["loss_final"], values["loss_best"] = _num(ls.get("final")), _num(ls.get("min"))
    acc_vals = accs[:, 2][np.isfinite(accs[:, 2])] if accs.size else accs
    if acc_vals.size:
        values["acc_final"], values["acc_best"] = float(acc_vals[-1]), float(acc_vals.max())
    else:
        ac = _dict(summary.get("accuracy"))
        values["acc_final"], values["acc_best"] = _num(ac.get("final")), _num(ac.get("best"))


def reduce_run(result: RunResult) -> RunData:
    """Turn a loaded run into :class:`RunData`; the caller may drop ``result`` afterwards.

    The document is a file anyone could have edited: past the checks of ``validate_results``, a
    field of the wrong kind (a list where a summary goes, text where a series goes) surfaces as
    a TypeError or the like, and means "this file is broken", never "harness is": it becomes a
    ResultsError naming the run, which compare lists under "Skipped (unreadable results)".

    Raises:
        ResultsError: when the per-batch data cannot be read as numbers, or a field is of the wrong kind.
    """
    try:
        return _reduce(result)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError) as e:
        if isinstance(e, ResultsError):
            raise
        raise ResultsError(result.path / "results.json", f"modes.{result.mode} holds a value of the wrong kind "
                                                         f"({e.__class__.__name__}: {one_line(str(e), 80)})") from e


def _reduce(result: RunResult) -> RunData:
    mode_data, run = result.mode_data, result.run
    summary = _dict(mode_data.get("summary"))
    index, dt, wait, sizes, step = _batches(result)
    steps = _step_stats(step, wait, sizes)
    metrics = _dict(mode_data.get("metrics"))
    losses = as_array(metrics.get("losses"), 3)
    accs = as_array(metrics.get("accuracies"), 3)
    ru = _dict(mode_data.get("resource_usage"))
    values: dict[str, float | None] = {k: None for k in ALL_METRICS}
    _speed_values(values, steps, summary, run)
    _resource_values(values, summary, ru)
    _quality_values(values, summary, losses, accs)
    return RunData(
        run_id=result.run_id, mode=result.mode, seed=result.seed, path=result.path,
        started_at=_num(run.get("started_at")), backend=run.get("backend"), image=run.get("image"),
        node=run.get("node"), environment=_dict(result.environment), config=_dict(mode_data.get("config")),
        experiment_name=result.experiment_name, values=values, steps=steps, batch_index=index,
        step_times=step, batch_dt=dt, data_wait=wait, batch_sizes=sizes, losses=losses, accuracies=accs,
        resource_usage=ru, custom_metrics=_dict(metrics.get("custom")), summary=summary, rebuilt=result.rebuilt,
        parallel=run.get("parallel") if isinstance(run.get("parallel"), dict) else None,
        hardware=run.get("hardware") if isinstance(run.get("hardware"), dict) else None,
        record={k: run[k] for k in ("cpu_source", "limits", "code", "ray") if isinstance(run.get(k), (str, dict))},
        fingerprint=_dict_or_none(run.get("fingerprint")),
        plan_id=run.get("plan_id") if isinstance(run.get("plan_id"), str) else None,
        ended_at=_num(run.get("ended_at")), host_load=_dict_or_none(run.get("host_load")))


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def load_run_fast(run_dir: Path) -> RunResult:
    """The run from its columnar twin when it matches results.json, else results.json, else events.

    The twin saves the JSON parse of a long run's per-batch lists (harness/results/columnar.py).
    """
    from harness.results.columnar import read

    try:
        document = read(run_dir, validate=validate_results)
    except ResultsError:
        document = None  # results.json itself will say what is wrong
    if document is not None:
        return RunResult(path=Path(run_dir), data=document)
    return load_run(run_dir)
