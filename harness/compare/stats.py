"""Pure statistics for comparing runs: no I/O, no plotting, numpy only.

Why these choices (docs/statistics.md has the evidence):

* Runs, not batches, are the unit of replication. Batch times inside one run share the run's
  offset (machine state, data order, allocator luck), so a test on pooled batches is wildly
  overconfident. Each run is reduced to a few statistics and the tests work across runs.
* Ratios are tested on the log scale (Welch's t, or a paired t on per-seed log ratios), so the
  confidence interval of the ratio is ``exp`` of an ordinary t interval and is symmetric in
  "x times faster" and "x times slower".
* scipy is not a runtime dependency: the Student-t CDF and quantile are computed here from the
  regularised incomplete beta function (Numerical Recipes' continued fraction, vectorised), and
  tests check them against scipy.
* Warm-up is found with MSER-5 (White 1997), the standard truncation rule in simulation output
  analysis: drop the prefix that minimises the standard error of the remaining mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.compare.tdist import betainc, t_cdf, t_pdf, t_ppf, t_sf

ALPHA = 0.05

# ----------------------------------------------------------------------------- ratio tests


@dataclass(frozen=True)
class RatioTest:
    """Ratio candidate / baseline of a per-run statistic, with its two-sided confidence interval."""

    ratio: float
    low: float
    high: float
    p_value: float
    df: float
    method: str  # "welch", "paired", "within-run" or "none"
    n_baseline: int
    n_candidate: int
    sd_log: float  # run-to-run standard deviation on the log scale (pooled)

    @property
    def significant(self) -> bool:
        return bool(self.p_value < ALPHA)

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "ci_low": self.low, "ci_high": self.high, "p_value": self.p_value,
                "df": self.df, "method": self.method, "n_baseline": self.n_baseline,
                "n_candidate": self.n_candidate, "sd_log": self.sd_log}


def welch_log_arrays(log_x: np.ndarray, log_y: np.ndarray, confidence: float = 0.95
                     ) -> dict[str, np.ndarray]:
    """Welch's t on logs along the last axis: vectorised core shared by the library and the simulation.

    Returns arrays ``diff`` (mean log y - mean log x), ``low``, ``high``, ``p``, ``df``, ``se``.
    """
    log_x, log_y = np.asarray(log_x, float), np.asarray(log_y, float)
    nx, ny = log_x.shape[-1], log_y.shape[-1]
    vx, vy = log_x.var(axis=-1, ddof=1), log_y.var(axis=-1, ddof=1)
    diff = log_y.mean(axis=-1) - log_x.mean(axis=-1)
    ax, ay = vx / nx, vy / ny
    se = np.sqrt(ax + ay)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (ax + ay) ** 2 / (ax**2 / (nx - 1) + ay**2 / (ny - 1))
    df = np.where(np.isfinite(df) & (df > 0), df, nx + ny - 2.0)
    return _t_interval(diff, se, df, confidence)


def paired_log_arrays(log_x: np.ndarray, log_y: np.ndarray, confidence: float = 0.95
                      ) -> dict[str, np.ndarray]:
    """Paired t on per-pair log ratios along the last axis (same seeds, interleaved runs)."""
    d = np.asarray(log_y, float) - np.asarray(log_x, float)
    n = d.shape[-1]
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    return _t_interval(d.mean(axis=-1), se, np.full_like(se, n - 1.0), confidence)


def _t_interval(diff: np.ndarray, se: np.ndarray, df: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    q = t_ppf(0.5 + confidence / 2.0, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(diff) / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))
    p = np.where(np.isinf(t), 0.0, 2.0 * t_sf(np.where(np.isinf(t), 0.0, t), df))
    return {"diff": diff, "low": diff - q * se, "high": diff + q * se, "p": np.clip(p, 0.0, 1.0),
            "df": df, "se": se}


def ratio_test(baseline: Any, candidate: Any, *, paired: bool = False, confidence: float = 0.95) -> RatioTest:
    """Test candidate/baseline on positive per-run statistics (one value per run).

    With fewer than 2 runs in a mode no across-run interval exists: the result has method "none",
    the point ratio and NaN bounds (the caller may add a within-run interval).
    """
    x = np.asarray(baseline, float)
    y = np.asarray(candidate, float)
    if x.size == 0 or y.size == 0:
        raise ValueError("each mode needs at least one value")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("ratio tests need positive values")
    lx, ly = np.log(x), np.log(y)
    ratio = float(np.exp(ly.mean() - lx.mean()))
    if x.size < 2 or y.size < 2:
        return RatioTest(ratio, math.nan, math.nan, math.nan, math.nan, "none", x.size, y.size, math.nan)
    if paired:
        if x.size != y.size:
            raise ValueError("a paired test needs as many baseline as candidate values")
        r = paired_log_arrays(lx, ly, confidence)
        sd = float(np.std(ly - lx, ddof=1) / math.sqrt(2.0))
    else:
        r = welch_log_arrays(lx, ly, confidence)
        sd = float(math.sqrt(((x.size - 1) * lx.var(ddof=1) + (y.size - 1) * ly.var(ddof=1))
                             / (x.size + y.size - 2)))
    return RatioTest(ratio, float(np.exp(r["low"])), float(np.exp(r["high"])), float(r["p"]),
                     float(r["df"]), "paired" if paired else "welch", x.size, y.size, sd)


def within_run_test(baseline_batches: Any, candidate_batches: Any, confidence: float = 0.95) -> RatioTest:
    """Welch on log batch times of single runs: an interval that ignores run-to-run noise.

    Only for the INCONCLUSIVE case (one run in a mode), and always labelled as within-run: it
    says how precisely one run was measured, not whether another run would agree.
    """
    x = np.asarray(baseline_batches, float)
    y = np.asarray(candidate_batches, float)
    x, y = x[x > 0], y[y > 0]
    if x.size < 2 or y.size < 2:
        ratio = float(np.exp(np.log(y).mean() - np.log(x).mean())) if x.size and y.size else math.nan
        return RatioTest(ratio, math.nan, math.nan, math.nan, math.nan, "none", 1, 1, math.nan)
    r = welch_log_arrays(np.log(x), np.log(y), confidence)
    return RatioTest(float(np.exp(r["diff"])), float(np.exp(r["low"])), float(np.exp(r["high"])),
                     float(r["p"]), float(r["df"]), "within-run", 1, 1, math.nan)


# ----------------------------------------------------------------------------- verdicts

FASTER, SLOWER, WITHIN_NOISE, NO_DIFFERENCE, INCONCLUSIVE = (
    "FASTER", "SLOWER", "within noise", "no significant difference", "INCONCLUSIVE")
VERDICT_CODES = (NO_DIFFERENCE, FASTER, SLOWER, WITHIN_NOISE, INCONCLUSIVE)


def verdict_codes(speed_low: Any, speed_high: Any, p: Any, noise_band: float, alpha: float = ALPHA) -> np.ndarray:
    """Vectorised verdicts on a *speed* ratio (> 1 means the candidate is faster).

    0 no significant difference, 1 FASTER, 2 SLOWER, 3 within noise, 4 INCONCLUSIVE (no interval).
    FASTER/SLOWER need significance *and* the whole interval beyond the noise band, so a real but
    tiny change is reported as such rather than sold as a speed-up.
    """
    lo, hi, p = np.asarray(speed_low, float), np.asarray(speed_high, float), np.asarray(p, float)
    significant = p < alpha
    codes = np.where(significant, 3, 0)
    codes = np.where(significant & (lo > 1.0 + noise_band), 1, codes)
    codes = np.where(significant & (hi < 1.0 - noise_band), 2, codes)
    return np.where(np.isnan(p) | np.isnan(lo) | np.isnan(hi), 4, codes)


def verdict(speed_low: float, speed_high: float, p: float, noise_band: float, alpha: float = ALPHA) -> str:
    """The verdict word for one speed interval (see :func:`verdict_codes`)."""
    return VERDICT_CODES[int(verdict_codes(speed_low, speed_high, p, noise_band, alpha))]


def runs_needed(sd_log: float, effect: float, *, alpha: float = ALPHA, power: float = 0.8,
                paired: bool = False, cap: int = 1000) -> int | None:
    """Runs per mode for a t test to detect a log-effect ``effect`` with the given power.

    The usual estimate (the one pyperf and textbooks use): the smallest n with
    ``(t_{1-alpha/2} + t_{power}) * sd * sqrt(k / n) <= |effect|``, k = 2 for two samples, 1 paired
    (sd then is of the per-pair difference divided by sqrt 2, so both read alike). None when
    the effect is zero or the noise unknown; ``cap`` when more than ``cap`` runs would be needed.
    """
    if not (sd_log > 0) or not math.isfinite(sd_log) or not math.isfinite(effect) or effect == 0:
        return None
    n = np.arange(2, cap + 1, dtype=float)
    df = n - 1.0 if paired else 2.0 * n - 2.0
    # All candidate n at once: one vectorised quantile call instead of up to `cap` scalar ones.
    q = t_ppf(1 - alpha / 2, df) + t_ppf(power, df)
    ok = np.nonzero(q * sd_log * np.sqrt(2.0 / n) <= abs(effect))[0]
    return int(n[ok[0]]) if ok.size else cap


# ----------------------------------------------------------------------------- outliers, warm-up


def tukey_fences(values: Any, k: float = 1.5) -> tuple[float, float]:
    """Tukey's fences [Q1 - k IQR, Q3 + k IQR]."""
    q1, q3 = np.percentile(np.asarray(values, float), [25, 75])
    iqr = q3 - q1
    return float(q1 - k * iqr), float(q3 + k * iqr)


def outlier_mask(values: Any, k: float = 1.5) -> np.ndarray:
    """True where a value lies outside Tukey's fences (counted and shown, never dropped)."""
    v = np.asarray(values, float)
    if v.size < 4:
        return np.zeros(v.shape, bool)
    lo, hi = tukey_fences(v, k)
    return (v < lo) | (v > hi)


def mser_curve(values: Any, block: int = 5, max_fraction: float = 0.5) -> np.ndarray:
    """MSER statistic for every truncation point d (in blocks), over block means.

    ``MSER(d) = sum_{i>=d} (z_i - mean_{i>=d})^2 / (m - d)^2`` with ``z`` the block means and ``m``
    their number, for ``d <= max_fraction * m``. O(n) with reverse cumulative sums.
    """
    v = np.asarray(values, float)
    m = v.size // block
    if m < 2:
        return np.zeros(1)
    z = v[: m * block].reshape(m, block).mean(axis=1)
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    count = np.arange(m, 0, -1, dtype=float)
    dmax = max(1, int(m * max_fraction))
    s1, s2, count = s1[:dmax], s2[:dmax], count[:dmax]
    sse = np.maximum(s2 - s1 * s1 / count, 0.0)
    return sse / (count * count)


def detect_warmup(times: Any, block: int = 5, max_fraction: float = 0.5) -> int:
    """Warm-up length W in batches (MSER-5 on log times): drop the first W before steady-state stats.

    Logs keep one long GC pause from pulling the truncation point. W is a multiple of ``block``;
    the MSER choice is then walked back over blocks no slower than the steady state.
    Runs shorter than 4 blocks are too short to tell and get W = 0.
    """
    t = np.asarray(times, float)
    if t.size < 4 * block:
        return 0
    logs = np.log(np.maximum(t, 1e-12))
    curve = mser_curve(logs, block, max_fraction)
    w = int(np.argmin(curve)) * block
    # MSER over-truncates on pure noise now and then (a lucky quiet stretch lowers the score).
    # Like pyperf's warm-up calibration, keep a dropped block only if it is measurably slower than
    # the steady state: walk back over blocks whose mean lies within 3 standard errors of it.
    if w:
        steady = logs[w:]
        centre = float(np.median(steady))
        scale = 1.4826 * float(np.median(np.abs(steady - centre)))
        limit = centre + 3.0 * scale / np.sqrt(block)
        while w >= block and float(logs[w - block:w].mean()) <= limit:
            w -= block
    return w


@dataclass(frozen=True)
class StepStats:
    """One run's batches reduced to the numbers the comparison uses."""

    n_batches: int
    warmup_batches: int
    warmup_cost_s: float  # time the warm-up took beyond steady-state pace
    steady_batches: int
    median_s: float
    mean_s: float
    p95_s: float
    std_s: float
    throughput: float  # samples (or batches) per second over steady-state batches
    data_wait_fraction: float | None
    outliers: int  # Tukey fences over steady-state step times
    outlier_max_s: float | None
    spread: float  # robust sd (1.4826 MAD) / median, steady state

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reduce_steps(step: np.ndarray, wait: np.ndarray | None = None, samples: np.ndarray | None = None
                 ) -> StepStats:
    """Reduce one run's per-batch step times (seconds, including data wait) to :class:`StepStats`.

    ``wait`` (seconds of data wait inside each step, NaN unknown) and ``samples`` (per batch, NaN
    unknown) are optional; without sample counts throughput is in batches per second.
    """
    step = np.asarray(step, float)
    n = step.size
    if n == 0:
        raise ValueError("no batches")
    w = detect_warmup(step)
    steady = step[w:]
    median = float(np.median(steady))
    mad = float(np.median(np.abs(steady - median)))
    total = float(steady.sum())
    if samples is not None and np.all(np.isfinite(samples[w:])):
        count = float(np.asarray(samples, float)[w:].sum())
    else:
        count = float(steady.size)
    wait_fraction = None
    if wait is not None:
        ws = np.asarray(wait, float)
        if np.any(np.isfinite(ws)):
            wait_fraction = float(np.nansum(ws) / step.sum()) if step.sum() > 0 else None
    mask = outlier_mask(steady)
    return StepStats(
        n_batches=n, warmup_batches=w,
        warmup_cost_s=float(max(step[:w].sum() - w * median, 0.0)),
        steady_batches=int(steady.size), median_s=median, mean_s=float(steady.mean()),
        p95_s=float(np.percentile(steady, 95)), std_s=float(steady.std(ddof=1)) if steady.size > 1 else 0.0,
        throughput=count / total if total > 0 else math.nan, data_wait_fraction=wait_fraction,
        outliers=int(mask.sum()), outlier_max_s=float(steady[mask].max()) if mask.any() else None,
        spread=1.4826 * mad / median if median > 0 else math.nan)


__all__ = ["ALPHA", "RatioTest", "StepStats", "betainc", "detect_warmup", "outlier_mask", "paired_log_arrays",
           "ratio_test", "reduce_steps", "runs_needed", "t_cdf", "t_pdf", "t_ppf", "t_sf", "tukey_fences",
           "verdict", "verdict_codes", "welch_log_arrays", "within_run_test"]
