"""The headline is what the user pays for: end-to-end time or steady-state speed, both when they disagree.

A steady-state figure drops the warm-up; an optimization that moves cost into the warm-up (a
feature cache, compilation) looked 6.7x faster in steady state while the run itself was 3.6x
faster. ``primary_metric`` in experiment_config.json picks the headline's metric:
``end_to_end``, ``steady_throughput``, or ``auto`` (the default: end-to-end when the runs are
shorter than 10 minutes, where the warm-up is a real share of what the user waits for;
steady-state throughput for longer runs, where it predicts the rest of training better). When
the two figures disagree beyond the noise band the headline gives both, and the diagnosis says
after how many epochs the warm-up pays for itself (docs/statistics.md, "The headline").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness.compare import stats

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison, MetricResult

PRIMARY_METRICS = ("auto", "end_to_end", "steady_throughput")
AUTO_SHORT_RUN_S = 600.0
METRIC_KEYS = {"end_to_end": "total_time", "steady_throughput": "throughput"}
WORDS = {"total_time": "end-to-end", "throughput": "once warm", "step_median": "once warm"}
NOTABLE_FIXED_S = 0.5  # a difference in warm-up and fixed costs worth a sentence (and 2 % of the run)


def resolve_primary(setting: str | None, runs: Sequence[Any]) -> str:
    """``end_to_end`` or ``steady_throughput`` for the setting and these runs' lengths."""
    if setting in ("end_to_end", "steady_throughput"):
        return setting
    totals = [r.values.get("total_time") for r in runs if r.values.get("total_time")]
    if totals and float(np.median(totals)) >= AUTO_SHORT_RUN_S:
        return "steady_throughput"
    return "end_to_end"


def headline_metric(comp: Comparison) -> MetricResult | None:
    """The tested speed metric the headline leads with: the primary one, else the first with a test.

    With one run a side the primary metric may have no interval at all (end-to-end time is one
    number per run); then a steady-state metric with a within-run interval leads instead.
    """
    key = METRIC_KEYS.get(getattr(comp, "primary_metric", "") or "", "throughput")
    m = comp.metric(key)
    if m is not None and m.test is not None and m.interval_kind != "none":
        return m
    # One run a side: only steady-state figures have an interval (within-run); lead with it.
    within = next((x for x in comp.speed if x.test is not None and x.interval_kind == "within run"), None)
    if within is not None:
        return within
    if m is not None and m.test is not None:
        return m
    return next((x for x in comp.speed if x.test is not None), None)


def other_metric(comp: Comparison) -> MetricResult | None:
    """The speed figure the headline may show beside its own (steady vs end-to-end)."""
    h = comp.headline
    if h is None:
        return None
    key = "throughput" if h.spec.key == "total_time" else "total_time"
    m = comp.metric(key)
    return m if m is not None and m.test is not None else None


def speed_of(m: MetricResult) -> tuple[float, float, float]:
    """(speed ratio, low, high) with > 1 meaning the candidate is faster, for any speed metric."""
    t = m.test
    if t is None:
        return math.nan, math.nan, math.nan
    if m.spec.better == "lower":
        return 1.0 / t.ratio, 1.0 / t.high if t.high else math.nan, 1.0 / t.low if t.low else math.nan
    return t.ratio, t.low, t.high


def disagree(comp: Comparison) -> bool:
    """Steady-state and end-to-end tell different stories beyond the noise band.

    Opposite verdicts (one FASTER, the other SLOWER), or speed ratios apart by more than the
    band with one ratio outside the other's 95 % interval. Verdicts that differ only because one
    interval touches the band are not a disagreement: the ratios then agree.
    """
    h, o = comp.headline, other_metric(comp)
    if h is None or o is None:
        return False
    if {h.verdict, o.verdict} == {stats.FASTER, stats.SLOWER}:
        return True
    sh, lh, hh = speed_of(h)
    so, lo, ho = speed_of(o)
    if not (sh > 0 and so > 0):
        return False
    apart = abs(math.log(sh / so)) > math.log(1.0 + comp.noise_band)
    outside = not (lo <= sh <= ho) or not (lh <= so <= hh)
    return apart and outside


def fixed_cost(run: Any) -> float | None:
    """Time a run spent outside steady-state steps: start-up, warm-up, evaluation, saving."""
    total, steps = run.values.get("total_time"), run.steps
    if total is None or steps is None or not math.isfinite(steps.mean_s):
        return None
    return float(total - steps.n_batches * steps.mean_s)


def mean_fixed_cost(runs: Sequence[Any]) -> float | None:
    vals = [v for v in (fixed_cost(r) for r in runs) if v is not None]
    return float(np.mean(vals)) if vals else None


def times(speed: float) -> str:
    return f"{speed:.4g}x"


def both_figures(comp: Comparison) -> str | None:
    """'8.2x once warm; it spends 2.3 s more warming up' for the figure the headline does not lead with."""
    o = other_metric(comp)
    if o is None:
        return None
    so, _, _ = speed_of(o)
    verdict = f" {o.verdict}" if o.verdict in (stats.FASTER, stats.SLOWER) and o.verdict != comp.headline.verdict \
        else ""
    text = f"{times(so)}{verdict} {WORDS.get(o.spec.key, o.spec.label.lower())}"
    fb, fc = mean_fixed_cost(comp.runs[comp.baseline]), mean_fixed_cost(comp.runs[comp.candidate])
    if fb is not None and fc is not None and abs(fc - fb) >= NOTABLE_FIXED_S:
        text += f"; it spends {abs(fc - fb):.1f} s {'more' if fc > fb else 'less'} warming up"
    return text


def within_noise_sentence(comp: Comparison, m: MetricResult) -> str:
    """'optimization is SLOWER by 4.4 % in end-to-end time, 95 % CI [1.8, 6.9] %, partly inside the ±2 % noise band.'

    The verdict stays "within noise" (criterion.rs's three-way rule: significant, but the
    interval reaches into the band), but the sentence says which side and how much.
    """
    t = m.test
    assert t is not None
    faster = (t.ratio > 1) == (m.spec.better == "higher")
    lo, hi = sorted((abs(t.low - 1) * 100, abs(t.high - 1) * 100))
    side = "FASTER" if faster else "SLOWER"
    return (f"{comp.candidate} is {side} by {abs(t.ratio - 1) * 100:.1f} % in {m.spec.label.lower()}, 95 % CI "
            f"[{lo:.1f}, {hi:.1f}] %, partly inside the ±{comp.noise_band * 100:g} % noise band.")


def payback_sentence(comp: Comparison) -> str | None:
    """After how many epochs the candidate's extra warm-up pays for itself (or its head start runs out)."""
    b, c = comp.runs[comp.baseline], comp.runs[comp.candidate]
    fb, fc = mean_fixed_cost(b), mean_fixed_cost(c)
    sb, sc = _steady_step(b), _steady_step(c)
    if None in (fb, fc, sb, sc):
        return None
    extra = fc - fb  # type: ignore[operator]
    total_b = float(np.mean([r.values.get("total_time") or 0.0 for r in b]))
    if abs(extra) < max(NOTABLE_FIXED_S, 0.02 * total_b):
        return None
    per_batch = sb - sc  # type: ignore[operator]  seconds saved per batch once warm
    if per_batch == 0 or (extra > 0) != (per_batch > 0):
        return None  # warm-up and steady state point the same way: nothing to trade off
    batches = extra / per_batch
    epochs = _batches_per_epoch(b)
    when = f"about {batches:,.0f} batches" + (f" ({batches / epochs:.1f} epochs)" if epochs else "")
    if extra > 0:
        return (f"{comp.candidate} spends {extra:.1f} s more than {comp.baseline} outside steady-state steps "
                f"(start-up and warm-up) and saves {per_batch * 1000:.3g} ms per batch once warm: the warm-up pays "
                f"for itself after {when}; training longer than that gains the steady-state speed-up.")
    return (f"{comp.candidate} spends {-extra:.1f} s less than {comp.baseline} outside steady-state steps but "
            f"{-per_batch * 1000:.3g} ms more per batch once warm: its head start is used up after {when}; "
            "longer training is slower with it.")


def _steady_step(runs: Sequence[Any]) -> float | None:
    vals = [r.steps.mean_s for r in runs if r.steps is not None and math.isfinite(r.steps.mean_s)]
    return float(np.mean(vals)) if vals else None


def _batches_per_epoch(runs: Sequence[Any]) -> float | None:
    """Batches per epoch from the run's config (``epochs``) or its logged loss epochs."""
    per = []
    for r in runs:
        if r.steps is None:
            continue
        epochs = r.config.get("epochs") if isinstance(r.config, dict) else None
        if not isinstance(epochs, (int, float)) or epochs <= 0:
            losses = getattr(r, "losses", None)
            epochs = int(np.nanmax(losses[:, 0])) + 1 if losses is not None and losses.size else None
        if epochs:
            per.append(r.steps.n_batches / float(epochs))
    return float(np.mean(per)) if per else None
