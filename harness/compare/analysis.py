"""Load two modes' runs, reduce each run, test across runs, and explain what the numbers say.

The core is :func:`compare_experiment` → :class:`Comparison`; tables, plots and reports only
render a Comparison. Runs are read one at a time and their per-batch lists are turned into numpy
arrays at once, so a 200,000-batch run costs a few MB after loading, not the ~80 MB of its JSON
objects.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from harness.compare import stats
from harness.errors import ExperimentNotFoundError, HarnessError, ResultsError, UsageError
from harness.results.load import RunResult, iter_run_dirs, load_run

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

    @property
    def unstable(self) -> bool:
        return self.steps is not None and math.isfinite(self.steps.spread) and self.steps.spread > UNSTABLE_SPREAD


def _as_array(pairs: Any, width: int) -> np.ndarray:
    """[[i, v], ...] → float array (n, width); None becomes NaN; malformed → empty."""
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
    arr = _as_array(pairs, 2)
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
    arr = _as_array(series, 2)
    vals = arr[:, 1][np.isfinite(arr[:, 1])] if arr.size else arr
    return float(vals.mean()) if vals.size else None


def _series_max(series: Any) -> float | None:
    arr = _as_array(series, 2)
    vals = arr[:, 1][np.isfinite(arr[:, 1])] if arr.size else arr
    return float(vals.max()) if vals.size else None


def reduce_run(result: RunResult) -> RunData:
    """Turn a loaded run into :class:`RunData`; the caller may drop ``result`` afterwards.

    Raises:
        ResultsError: when the per-batch data cannot be read as numbers.
    """
    mode_data = result.mode_data
    run = result.run
    summary = mode_data.get("summary") if isinstance(mode_data.get("summary"), dict) else {}
    bt = _as_array(mode_data.get("batch_times"), 2)
    if mode_data.get("batch_times") and bt.size == 0:
        raise ResultsError(result.path / "results.json", f"modes.{result.mode}.batch_times is not a list of "
                                                         "[index, seconds] pairs")
    index = bt[:, 0]
    dt = bt[:, 1]
    wait = _aligned(index, mode_data.get("data_wait_times"))
    sizes = _aligned(index, mode_data.get("batch_sizes"))
    good = np.isfinite(dt) & (dt >= 0)
    if not good.all():
        index, dt, wait, sizes = index[good], dt[good], wait[good], sizes[good]
    step = dt + np.nan_to_num(wait, nan=0.0)
    steps: stats.StepStats | None = None
    positive = step > 0
    if positive.sum() >= 1:
        has_sizes = bool(np.all(np.isfinite(sizes))) and sizes.size > 0
        steps = stats.reduce_steps(step[positive], wait[positive] if np.isfinite(wait).any() else None,
                                   sizes[positive] if has_sizes else None)
    metrics = mode_data.get("metrics") if isinstance(mode_data.get("metrics"), dict) else {}
    losses = _as_array(metrics.get("losses"), 3)
    accs = _as_array(metrics.get("accuracies"), 3)
    ru = mode_data.get("resource_usage") if isinstance(mode_data.get("resource_usage"), dict) else {}

    values: dict[str, float | None] = {k: None for k in ALL_METRICS}
    if steps is not None:
        values.update(throughput=steps.throughput, step_median=steps.median_s, step_mean=steps.mean_s,
                      step_p95=steps.p95_s, warmup_batches=float(steps.warmup_batches),
                      warmup_cost=steps.warmup_cost_s, data_wait_fraction=steps.data_wait_fraction)
    else:
        values["throughput"] = _num(summary.get("throughput"))
    if values["data_wait_fraction"] is None:
        values["data_wait_fraction"] = _num(summary.get("data_wait_fraction"))
    values["total_time"] = _num(summary.get("total_time")) or _num(run.get("wall_time"))
    cpu = summary.get("cpu") if isinstance(summary.get("cpu"), dict) else {}
    values["cpu_cores"] = _num(cpu.get("mean_cores")) if cpu else _series_mean(ru.get("cpu_cores"))
    if values["cpu_cores"] is None:
        values["cpu_cores"] = _series_mean(ru.get("cpu_cores"))
    values["cpu_percent"] = _num(cpu.get("mean_percent_of_limit")) or _series_mean(ru.get("cpu_usage"))
    values["cpu_throttled"] = _num(cpu.get("throttled_fraction"))
    if values["cpu_throttled"] is None:
        values["cpu_throttled"] = _series_mean(ru.get("cpu_throttled"))
    mem = summary.get("memory") if isinstance(summary.get("memory"), dict) else {}
    values["mem_peak"] = _num(mem.get("peak_bytes")) or _series_max(ru.get("memory_bytes"))
    values["mem_mean"] = _num(mem.get("mean_bytes")) or _series_mean(ru.get("memory_bytes"))
    gpu_util, gpu_mem = [], []
    for series in (ru.get("gpu_usage") or {}).values():
        m = _series_mean(series)
        if m is not None:
            gpu_util.append(m)
    for series in (ru.get("gpu_memory") or {}).values():
        m = _series_max(series)
        if m is not None:
            gpu_mem.append(m)
    values["gpu_util"] = float(np.mean(gpu_util)) if gpu_util else None
    values["gpu_mem_peak"] = float(np.sum(gpu_mem)) if gpu_mem else None
    loss_vals = losses[:, 2][np.isfinite(losses[:, 2])] if losses.size else losses
    if loss_vals.size:
        values["loss_final"], values["loss_best"] = float(loss_vals[-1]), float(loss_vals.min())
    else:
        ls = summary.get("loss") if isinstance(summary.get("loss"), dict) else {}
        values["loss_final"], values["loss_best"] = _num(ls.get("final")), _num(ls.get("min"))
    acc_vals = accs[:, 2][np.isfinite(accs[:, 2])] if accs.size else accs
    if acc_vals.size:
        values["acc_final"], values["acc_best"] = float(acc_vals[-1]), float(acc_vals.max())
    else:
        ac = summary.get("accuracy") if isinstance(summary.get("accuracy"), dict) else {}
        values["acc_final"], values["acc_best"] = _num(ac.get("final")), _num(ac.get("best"))

    env = result.environment if isinstance(result.environment, dict) else {}
    return RunData(
        run_id=result.run_id, mode=result.mode, seed=result.seed, path=result.path,
        started_at=_num(run.get("started_at")), backend=run.get("backend"), image=run.get("image"),
        node=run.get("node"), environment=env,
        config=mode_data.get("config") if isinstance(mode_data.get("config"), dict) else {},
        experiment_name=result.experiment_name, values=values, steps=steps, batch_index=index,
        step_times=step, batch_dt=dt, data_wait=wait, batch_sizes=sizes, losses=losses, accuracies=accs,
        resource_usage=ru, custom_metrics=metrics.get("custom") if isinstance(metrics.get("custom"), dict) else {},
        summary=summary, rebuilt=result.rebuilt,
        parallel=run.get("parallel") if isinstance(run.get("parallel"), dict) else None)


# ----------------------------------------------------------------------------- the comparison


@dataclass
class MetricResult:
    """One metric across the two modes: per-run values, and for speed metrics a test and verdict."""

    spec: MetricSpec
    baseline: list[float]
    candidate: list[float]
    test: stats.RatioTest | None = None  # ratio candidate/baseline of the metric itself
    verdict: str | None = None
    interval_kind: str = "across runs"  # or "within run" (INCONCLUSIVE), or "none"
    runs_needed: int | None = None

    @property
    def baseline_mean(self) -> float | None:
        return float(np.mean(self.baseline)) if self.baseline else None

    @property
    def candidate_mean(self) -> float | None:
        return float(np.mean(self.candidate)) if self.candidate else None

    @property
    def ratio(self) -> float | None:
        if self.test is not None:
            return self.test.ratio
        b, c = self.baseline_mean, self.candidate_mean
        if b is None or c is None or b == 0:
            return None
        return c / b

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.spec.label, "unit": self.spec.unit, "better": self.spec.better,
            "baseline": {"values": self.baseline, "mean": self.baseline_mean,
                         "std": float(np.std(self.baseline, ddof=1)) if len(self.baseline) > 1 else None},
            "candidate": {"values": self.candidate, "mean": self.candidate_mean,
                          "std": float(np.std(self.candidate, ddof=1)) if len(self.candidate) > 1 else None},
            "ratio": self.ratio,
        }
        if self.test is not None:
            out.update(test=self.test.to_dict(), verdict=self.verdict, interval=self.interval_kind,
                       runs_needed=self.runs_needed)
        return out


@dataclass
class Comparison:
    """Everything ``harness compare`` found out about one experiment."""

    experiment_name: str
    experiment_dir: Path
    baseline: str
    candidate: str
    noise_band: float
    runs: dict[str, list[RunData]]
    paired: bool
    speed: list[MetricResult]
    descriptive: list[MetricResult]
    left_out: list[tuple[str, str, str, Path]] = field(default_factory=list)  # run_id, mode, status, path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fairness: list[str] = field(default_factory=list)
    diagnosis: list[str] = field(default_factory=list)
    quality_flags: list[str] = field(default_factory=list)
    outlier_runs: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def headline(self) -> MetricResult | None:
        """The verdict the summary leads with: throughput if batches were logged, else end-to-end time."""
        for m in self.speed:
            if m.test is not None:
                return m
        return None

    @property
    def is_slower(self) -> bool:
        h = self.headline
        return h is not None and h.verdict == stats.SLOWER

    def metric(self, key: str) -> MetricResult | None:
        for m in self.speed + self.descriptive:
            if m.spec.key == key:
                return m
        return None

    def representative(self, mode: str) -> RunData | None:
        """The run whose headline statistic is the mode's median (what the seed-format fields show)."""
        runs = self.runs.get(mode) or []
        if not runs:
            return None
        key = self.headline.spec.key if self.headline else "total_time"
        vals = [r.values.get(key) for r in runs]
        if any(v is None for v in vals):
            return runs[0]
        order = np.argsort(vals)
        return runs[int(order[(len(runs) - 1) // 2])]


def speed_interval(metric: MetricResult) -> tuple[float, float, float]:
    """(speed ratio, low, high) with > 1 meaning the candidate is faster, for any speed metric."""
    t = metric.test
    if t is None:
        return math.nan, math.nan, math.nan
    if metric.spec.better == "lower":
        return 1.0 / t.ratio, 1.0 / t.high if t.high else math.nan, 1.0 / t.low if t.low else math.nan
    return t.ratio, t.low, t.high


def _test_speed_metric(spec: MetricSpec, base: list[RunData], cand: list[RunData], paired: bool,
                       noise_band: float) -> MetricResult | None:
    bv = [r.values[spec.key] for r in base]
    cv = [r.values[spec.key] for r in cand]
    if any(v is None or not v > 0 for v in bv + cv):
        return None
    bv_f, cv_f = [float(v) for v in bv], [float(v) for v in cv]  # type: ignore[arg-type]
    if paired:
        bseed = sorted(base, key=lambda r: r.seed)  # type: ignore[arg-type, return-value]
        cseed = sorted(cand, key=lambda r: r.seed)  # type: ignore[arg-type, return-value]
        bv_f = [float(r.values[spec.key]) for r in bseed]  # type: ignore[arg-type]
        cv_f = [float(r.values[spec.key]) for r in cseed]  # type: ignore[arg-type]
    test = stats.ratio_test(bv_f, cv_f, paired=paired)
    result = MetricResult(spec, bv_f, cv_f, test=test)
    if test.method == "none":
        result.interval_kind = "none"
        bparts = [r.step_times[r.steps.warmup_batches:] for r in base if r.steps]
        cparts = [r.step_times[r.steps.warmup_batches:] for r in cand if r.steps]
        if spec.key in ("throughput", "step_median") and bparts and cparts:
            within = stats.within_run_test(np.concatenate(bparts), np.concatenate(cparts))
            if within.method == "within-run":
                # Centre the within-run spread on the statistic's own ratio; throughput moves inversely.
                lo_f, hi_f = within.low / within.ratio, within.high / within.ratio
                lo, hi = ((test.ratio / hi_f, test.ratio / lo_f) if spec.better == "higher"
                          else (test.ratio * lo_f, test.ratio * hi_f))
                within = stats.RatioTest(test.ratio, lo, hi, within.p_value, within.df, "within-run",
                                         test.n_baseline, test.n_candidate, math.nan)
                result.test = within
                result.interval_kind = "within run"
        result.verdict = stats.INCONCLUSIVE
        return result
    s, lo, hi = speed_interval(result)
    result.verdict = stats.verdict(lo, hi, test.p_value, noise_band)
    result.runs_needed = stats.runs_needed(test.sd_log, math.log(test.ratio), paired=paired)
    return result


def _describe(spec: MetricSpec, base: list[RunData], cand: list[RunData]) -> MetricResult | None:
    bv = [float(v) for v in (r.values.get(spec.key) for r in base) if v is not None]
    cv = [float(v) for v in (r.values.get(spec.key) for r in cand) if v is not None]
    if not bv and not cv:
        return None
    return MetricResult(spec, bv, cv)


MIN_PAIRS = 5  # below this a paired t (n - 1 df) loses more to its df than pairing wins; docs/statistics.md


def _is_paired(base: list[RunData], cand: list[RunData]) -> bool:
    """Same seeds, one run per seed and mode, at least MIN_PAIRS of them, runs interleaved in time."""
    bs, cs = [r.seed for r in base], [r.seed for r in cand]
    if None in bs or None in cs or len(bs) < MIN_PAIRS or len(set(bs)) != len(bs) or sorted(bs) != sorted(cs):
        return False
    bt = [r.started_at for r in base]
    ct = [r.started_at for r in cand]
    if None in bt or None in ct:
        return False
    return min(bt) < max(ct) and min(ct) < max(bt)  # type: ignore[type-var]


def compare_runs(baseline_runs: list[RunData], candidate_runs: list[RunData], *, baseline: str = "baseline",
                 candidate: str = "optimization", noise_band: float = DEFAULT_NOISE_BAND,
                 experiment_name: str = "", experiment_dir: Path = Path(".")) -> Comparison:
    """Compare already-reduced runs (the pure part of :func:`compare_experiment`)."""
    if not baseline_runs or not candidate_runs:
        raise ValueError("each mode needs at least one run")
    paired = _is_paired(baseline_runs, candidate_runs)
    speed = [m for m in (_test_speed_metric(s, baseline_runs, candidate_runs, paired, noise_band)
                         for s in SPEED_METRICS) if m is not None]
    descriptive = [m for m in (_describe(s, baseline_runs, candidate_runs) for s in DESCRIPTIVE_METRICS)
                   if m is not None]
    comp = Comparison(experiment_name=experiment_name, experiment_dir=experiment_dir, baseline=baseline,
                      candidate=candidate, noise_band=noise_band,
                      runs={baseline: baseline_runs, candidate: candidate_runs}, paired=paired, speed=speed,
                      descriptive=descriptive)
    from harness.compare.diagnosis import diagnose

    diagnose(comp)
    return comp


# ----------------------------------------------------------------------------- loading


def load_mode_runs(experiment_dir: Path, mode: str, run_ids: Iterable[str] | None = None,
                   on_problem: Callable[[ResultsError], None] | None = None, use_cache: bool = True
                   ) -> tuple[list[RunData], list[tuple[str, str, str, Path]], list[str]]:
    """Read one mode's runs one at a time: (completed runs reduced, left-out runs, problem lines).

    Reduced runs are cached (see :mod:`harness.compare.cache`); ``use_cache=False`` ignores the cache.
    """
    from harness.compare import cache

    wanted = set(run_ids) if run_ids else None
    completed: list[RunData] = []
    left_out: list[tuple[str, str, str, Path]] = []
    problems: list[str] = []
    for run_dir in iter_run_dirs(Path(experiment_dir) / "results", mode):
        if wanted is not None and run_dir.name not in wanted:
            continue
        cached = cache.load_cached(experiment_dir, mode, run_dir) if use_cache else None
        if cached is not None:
            completed.append(cached)
            continue
        try:
            result = load_run(run_dir)
            if wanted is not None and result.run_id not in wanted:
                continue
            if result.status != "completed":
                left_out.append((result.run_id, result.mode, result.status, run_dir))
                continue
            run = reduce_run(result)
            # Drop the parsed document before the next file is read: it is ~10x the reduced run.
            del result
            completed.append(run)
            if use_cache:
                cache.store(experiment_dir, run)
        except ResultsError as e:
            problems.append(str(e))
            if on_problem:
                on_problem(e)
    return completed, left_out, problems


def compare_experiment(experiment_dir: Path, baseline: str = "baseline", candidate: str = "optimization",
                       run_ids: list[str] | None = None, noise_band: float = DEFAULT_NOISE_BAND) -> Comparison:
    """Compare every completed run of two modes of the experiment in ``experiment_dir``.

    Raises:
        ExperimentNotFoundError: when ``experiment_dir`` is not a folder.
        UsageError: when the modes are the same, a run id is unknown, or a mode has no completed run.
    """
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        raise ExperimentNotFoundError(f"{experiment_dir} is not a folder",
                                      hint="give an experiment folder, e.g. experiments/kaggle_<name>")
    if baseline == candidate:
        raise UsageError(f"--baseline and --candidate are both {baseline!r}; pick two different modes")
    if not 0 <= noise_band < 1:
        raise UsageError(f"--noise-band must be between 0 and 100 percent (got {noise_band * 100:g})")
    base, base_left, base_problems = load_mode_runs(experiment_dir, baseline, run_ids)
    cand, cand_left, cand_problems = load_mode_runs(experiment_dir, candidate, run_ids)
    if run_ids:
        found = {r.run_id for r in base + cand} | {x[0] for x in base_left + cand_left}
        missing = [r for r in run_ids if r not in found]
        if missing:
            raise UsageError(f"no run {missing[0]!r} of mode {baseline!r} or {candidate!r} in "
                             f"{experiment_dir / 'results'}", hint="list the runs with `ls results/*/`")
    for mode, runs, left in ((baseline, base, base_left), (candidate, cand, cand_left)):
        if not runs:
            extra = f" ({len(left)} left out: not completed)" if left else ""
            raise UsageError(f"no completed run of mode {mode!r} in {experiment_dir / 'results'}{extra}",
                             hint=f"run it first: harness run {mode}")
    name = next((r.experiment_name for r in base + cand if r.experiment_name), experiment_dir.name)
    comp = compare_runs(base, cand, baseline=baseline, candidate=candidate, noise_band=noise_band,
                        experiment_name=name, experiment_dir=experiment_dir)
    comp.left_out = base_left + cand_left
    comp.problems = base_problems + cand_problems
    return comp


def compare_many(experiment_dirs: list[Path], baseline: str = "baseline", candidate: str = "optimization",
                 noise_band: float = DEFAULT_NOISE_BAND) -> list[tuple[Path, Comparison | None, str | None]]:
    """Compare several experiments; one that cannot be compared keeps its error message instead."""
    out: list[tuple[Path, Comparison | None, str | None]] = []
    for path in experiment_dirs:
        try:
            out.append((path, compare_experiment(path, baseline, candidate, None, noise_band), None))
        except HarnessError as e:
            out.append((path, None, str(e)))
    return out
