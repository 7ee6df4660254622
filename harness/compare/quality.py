"""A faster run that learns worse is not a win: the quality line under the headline, ``--fail-if-worse``.

The quality metrics are what the script logged: final and best accuracy, final loss, or the
``log_metric`` that ``quality_metric`` in experiment_config.json names (with its direction).
A metric is *worse* when the candidate's mean is on the wrong side and Welch's t on the per-run
values says p < 0.05, i.e. beyond the run-to-run spread; with one run a side, a relative change
over 5 % counts (and says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness.compare import stats

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison

QUALITY_TOLERANCE = 0.05  # relative change treated as "learns worse" with a single run a side
BUILT_IN = (("acc_final", "final accuracy", "accuracy", "higher"), ("acc_best", "best accuracy", "accuracy", "higher"),
            ("loss_final", "final loss", "loss", "lower"))


@dataclass(frozen=True)
class QualityResult:
    """One quality metric across the two modes."""

    label: str  # "final accuracy"
    noun: str  # "accuracy": what the headline line names
    better: str  # "higher" | "lower"
    baseline: list[float]
    candidate: list[float]
    p_value: float | None  # None with one run a side
    worse: bool

    @property
    def baseline_mean(self) -> float:
        return float(np.mean(self.baseline))

    @property
    def candidate_mean(self) -> float:
        return float(np.mean(self.candidate))

    def why(self) -> str:
        return f"p={self.p_value:.3g}" if self.p_value is not None else "one run a side: a 5 % tolerance"

    def headline_line(self) -> str:
        """'but accuracy is lower: 0.912 vs 0.931 (p=0.004)'."""
        word = "lower" if self.candidate_mean < self.baseline_mean else "higher"
        return (f"but {self.noun} is {word}: {self.candidate_mean:.4g} vs {self.baseline_mean:.4g} "
                f"({self.why()})")


def welch_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value on raw values (0 for a difference with no spread at all)."""
    ax, ay = np.asarray(x, float), np.asarray(y, float)
    vx, vy = ax.var(ddof=1) / ax.size, ay.var(ddof=1) / ay.size
    se = math.sqrt(vx + vy)
    diff = ay.mean() - ax.mean()
    if se == 0:
        return 0.0 if diff != 0 else 1.0
    df = (vx + vy) ** 2 / ((vx**2 / (ax.size - 1) if vx else 0) + (vy**2 / (ay.size - 1) if vy else 0) or 1e-300)
    return float(2 * stats.t_sf(abs(diff) / se, df))


def _judge(label: str, noun: str, better: str, bv: list[float], cv: list[float]) -> QualityResult | None:
    if not bv or not cv:
        return None
    b, c = float(np.mean(bv)), float(np.mean(cv))
    wrong_side = c < b if better == "higher" else c > b
    if len(bv) >= 2 and len(cv) >= 2:
        p: float | None = welch_p(bv, cv)
        worse = wrong_side and p is not None and p < stats.ALPHA
    else:
        p = None
        worse = wrong_side and (abs(c - b) / abs(b) if b else math.inf) > QUALITY_TOLERANCE
    return QualityResult(label, noun, better, bv, cv, p, worse)


def _custom_value(run: Any, name: str, reduce: str, better: str) -> float | None:
    series = (getattr(run, "custom_metrics", None) or {}).get(name)
    if not isinstance(series, list):
        return None
    vals = [float(v[1]) for v in series if isinstance(v, (list, tuple)) and len(v) >= 2
            and isinstance(v[1], (int, float)) and math.isfinite(v[1])]
    if not vals:
        return None
    if reduce == "best":
        return max(vals) if better == "higher" else min(vals)
    return vals[-1]


def assess(comp: Comparison, quality_metric: dict[str, Any] | None = None) -> list[QualityResult]:
    """Every quality metric the runs logged (or just the configured one), judged."""
    base, cand = comp.runs[comp.baseline], comp.runs[comp.candidate]
    out: list[QualityResult] = []
    if quality_metric and quality_metric.get("name") not in (None, "accuracy", "loss"):
        name = str(quality_metric["name"])
        better = str(quality_metric.get("better") or "higher")
        reduce = str(quality_metric.get("reduce") or "final")
        bv = [v for v in (_custom_value(r, name, reduce, better) for r in base) if v is not None]
        cv = [v for v in (_custom_value(r, name, reduce, better) for r in cand) if v is not None]
        result = _judge(f"{reduce} {name}", name, better, bv, cv)
        return [result] if result else []
    wanted = quality_metric.get("name") if quality_metric else None
    for key, label, noun, better in BUILT_IN:
        if wanted and noun != wanted:
            continue
        bv = [float(v) for v in (r.values.get(key) for r in base) if v is not None]
        cv = [float(v) for v in (r.values.get(key) for r in cand) if v is not None]
        result = _judge(label, noun, better, bv, cv)
        if result:
            out.append(result)
    return out


def flags(comp: Comparison, results: list[QualityResult]) -> list[str]:
    """The Quality section's sentences."""
    return [f"{comp.candidate} learns worse: {r.label} {r.candidate_mean:.4g} against {r.baseline_mean:.4g} "
            f"({r.why()}). A speed-up that costs quality is not a win." for r in results if r.worse]


def headline_line(results: list[QualityResult]) -> str | None:
    """The second headline line for the first worse metric, or None."""
    worse = [r for r in results if r.worse]
    return worse[0].headline_line() if worse else None
