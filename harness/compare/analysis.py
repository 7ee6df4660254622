"""Load two modes' runs, reduce each run, test across runs, and explain what the numbers say.

The core is :func:`compare_experiment` → :class:`Comparison`; tables, plots and reports only
render a Comparison. Runs are read one at a time and their per-batch lists are turned into numpy
arrays at once, so a 200,000-batch run costs a few MB after loading, not the ~80 MB of its JSON
objects.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from harness.compare import stats
from harness.compare.headline import speed_of as speed_interval
from harness.errors import ExperimentNotFoundError, HarnessError, ResultsError, UsageError
from harness.compare.reduce import (DEFAULT_NOISE_BAND, DESCRIPTIVE_METRICS, SPEED_METRICS, MetricSpec,
                                    RunData, load_run_fast, reduce_run)
from harness.results.load import iter_run_dirs

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
    primary_metric: str = "end_to_end"  # resolved: end_to_end | steady_throughput (compare/headline.py)
    quality_metric: dict[str, Any] | None = None  # the config's quality_metric, when it names one
    quality: list[Any] = field(default_factory=list)  # compare.quality.QualityResult per quality metric
    all_runs: bool = False
    left_out_older: list[str] = field(default_factory=list)  # "Left out (older code)" lines
    runs_left_out_older: list[RunData] = field(default_factory=list)

    @property
    def headline(self) -> MetricResult | None:
        """The verdict the summary leads with: the primary metric (compare/headline.py)."""
        from harness.compare.headline import headline_metric

        return headline_metric(self)

    @property
    def is_slower(self) -> bool:
        h = self.headline
        return h is not None and h.verdict == stats.SLOWER

    @property
    def is_worse(self) -> bool:
        """A quality metric is worse in the candidate beyond the run-to-run spread."""
        return any(q.worse for q in self.quality)

    @property
    def quality_line(self) -> str | None:
        """The headline's second line ('but accuracy is lower: ...'), or None."""
        from harness.compare.quality import headline_line

        return headline_line(self.quality)

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
    from harness.compare.identity import one_fingerprint

    if not one_fingerprint(base) or not one_fingerprint(cand):
        return False  # a pair must measure the same code on both sides, every time
    bt = [r.started_at for r in base]
    ct = [r.started_at for r in cand]
    if None in bt or None in ct:
        return False
    return min(bt) < max(ct) and min(ct) < max(bt)  # type: ignore[type-var]


def compare_runs(baseline_runs: list[RunData], candidate_runs: list[RunData], *, baseline: str = "baseline",
                 candidate: str = "optimization", noise_band: float = DEFAULT_NOISE_BAND,
                 experiment_name: str = "", experiment_dir: Path = Path("."), primary_metric: str = "auto",
                 quality_metric: dict[str, Any] | None = None) -> Comparison:
    """Compare already-reduced runs (the pure part of :func:`compare_experiment`)."""
    from harness.compare.headline import resolve_primary

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
                      descriptive=descriptive, primary_metric=resolve_primary(primary_metric, baseline_runs),
                      quality_metric=quality_metric)
    from harness.compare.diagnosis import diagnose

    diagnose(comp)
    return comp


# ----------------------------------------------------------------------------- loading


def load_mode_runs(experiment_dir: Path, mode: str, run_ids: Iterable[str] | None = None,
                   on_problem: Callable[[ResultsError], None] | None = None, use_cache: bool = True,
                   to_cache: list[RunData] | None = None
                   ) -> tuple[list[RunData], list[tuple[str, str, str, Path]], list[str]]:
    """Read one mode's runs one at a time: (completed runs reduced, left-out runs, problem lines).

    Reduced runs are cached (see :mod:`harness.compare.cache`); ``use_cache=False`` ignores the cache.
    With ``to_cache``, runs to cache are added to it instead, for the caller to store once it is sure
    to proceed (a refused compare writes nothing).
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
            result = load_run_fast(run_dir)
            if wanted is not None and result.run_id not in wanted:
                continue
            if result.status != "completed":
                left_out.append((result.run_id, result.mode, result.status, run_dir))
                continue
            run = reduce_run(result)
            # Drop the parsed document before the next file is read: it is ~10x the reduced run.
            del result
            completed.append(run)
            if use_cache and to_cache is not None:
                to_cache.append(run)
            elif use_cache:
                cache.store(experiment_dir, run)
        except ResultsError as e:
            problems.append(str(e))
            if on_problem:
                on_problem(e)
    return completed, left_out, problems


REPORT_FILES = ("comparison.json", "report.md", "report.html")


def check_report_targets(out_dir: Path) -> None:
    """Refuse, before anything is read or written, report paths that are folders or other non-files.

    Raises:
        UsageError: naming the path (a folder where a report goes is the user's, never removed).
    """
    from harness.errors import UsageError

    if os.path.lexists(out_dir) and (out_dir.is_symlink() or not out_dir.is_dir()):
        raise UsageError(f"{out_dir} is not a folder; compare writes its reports there",
                         hint="move it away and run compare again")
    for name in REPORT_FILES:
        path = out_dir / name
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            raise UsageError(f"{path} is not a plain file; compare writes its report there",
                             hint="move it away and run compare again")


def compare_settings(experiment_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """``primary_metric`` and ``quality_metric`` from the experiment's config (defaults without one).

    Raises:
        ConfigError: when experiment_config.json exists but is invalid.
    """
    from harness.config import CONFIG_FILENAME, load_config

    path = Path(experiment_dir) / CONFIG_FILENAME
    if not path.is_file():
        return "auto", None
    config = load_config(path)
    quality = config.quality_metric.model_dump() if config.quality_metric is not None else None
    return config.primary_metric, quality


def compare_experiment(experiment_dir: Path, baseline: str = "baseline", candidate: str = "optimization",
                       run_ids: list[str] | None = None, noise_band: float = DEFAULT_NOISE_BAND,
                       all_runs: bool = False) -> Comparison:
    """Compare the completed runs of two modes of the experiment in ``experiment_dir``.

    Each mode uses the runs of its newest fingerprint unless ``all_runs`` (or ``run_ids``, the
    user's own choice) says to pool them (compare/identity.py).

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
    check_report_targets(experiment_dir / "results" / "comparison")
    if not 0 <= noise_band < 1:
        raise UsageError(f"--noise-band must be between 0 and 100 percent (got {noise_band * 100:g})")
    to_cache: list[RunData] = []
    base, base_left, base_problems = load_mode_runs(experiment_dir, baseline, run_ids, to_cache=to_cache)
    cand, cand_left, cand_problems = load_mode_runs(experiment_dir, candidate, run_ids, to_cache=to_cache)
    if run_ids:
        found = {r.run_id for r in base + cand} | {x[0] for x in base_left + cand_left}
        missing = [r for r in run_ids if r not in found]
        if missing:
            raise UsageError(f"no run {missing[0]!r} of mode {baseline!r} or {candidate!r} in "
                             f"{experiment_dir / 'results'}", hint="list the runs with `ls results/*/`")
    from harness.compare import identity, machine

    pool = all_runs or bool(run_ids)
    selections = [identity.select_runs(baseline, base, pool), identity.select_runs(candidate, cand, pool)]
    for mode, sel, left, problems in ((baseline, selections[0], base_left, base_problems),
                                      (candidate, selections[1], cand_left, cand_problems)):
        if not sel.used:
            extra = f" ({len(left)} left out: not completed)" if left else ""
            if sel.changed_in_plan:
                extra = f" ({len(sel.changed_in_plan)} left out: the code changed while their plan ran)"
            if problems:
                extra += f" ({len(problems)} unreadable, skipped: {problems[0]})"
            raise UsageError(f"no completed run of mode {mode!r} in {experiment_dir / 'results'}{extra}",
                             hint=f"run it first: harness run {mode}")
    base, cand = selections[0].used, selections[1].used
    primary, quality = compare_settings(experiment_dir)
    name = next((r.experiment_name for r in base + cand if r.experiment_name), experiment_dir.name)
    comp = compare_runs(base, cand, baseline=baseline, candidate=candidate, noise_band=noise_band,
                        experiment_name=name, experiment_dir=experiment_dir, primary_metric=primary,
                        quality_metric=quality)
    comp.all_runs = pool
    comp.left_out = base_left + cand_left
    comp.problems = base_problems + cand_problems
    identity.annotate(comp, selections)
    machine.annotate(comp, experiment_dir / "results")
    from harness.compare import cache

    for run in to_cache:  # only now: the comparison is sure to proceed
        cache.store(experiment_dir, run)
    return comp


def compare_many(experiment_dirs: list[Path], baseline: str = "baseline", candidate: str = "optimization",
                 noise_band: float = DEFAULT_NOISE_BAND, all_runs: bool = False
                 ) -> list[tuple[Path, Comparison | None, str | None]]:
    """Compare several experiments; one that cannot be compared keeps its error message instead."""
    out: list[tuple[Path, Comparison | None, str | None]] = []
    for path in experiment_dirs:
        try:
            out.append((path, compare_experiment(path, baseline, candidate, None, noise_band, all_runs), None))
        except HarnessError as e:
            out.append((path, None, str(e)))
    return out
