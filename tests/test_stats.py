"""harness.compare.stats against references computed another way (scipy, brute-force loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as ss

from harness.compare import stats


@pytest.mark.parametrize("df", [1, 1.5, 2, 3, 4.7, 10, 30, 120, 1e4])
def test_t_ppf_and_cdf_match_scipy(df: float) -> None:
    ps = np.array([0.001, 0.025, 0.1, 0.5, 0.8, 0.9, 0.975, 0.995, 0.9999])
    np.testing.assert_allclose(stats.t_ppf(ps, df), ss.t.ppf(ps, df), rtol=1e-9, atol=1e-9)
    ts = np.array([-40.0, -3.0, -0.5, 0.0, 0.7, 2.0, 12.0, 300.0])
    np.testing.assert_allclose(stats.t_cdf(ts, df), ss.t.cdf(ts, df), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.t_sf(ts, df), ss.t.sf(ts, df), rtol=1e-8, atol=1e-300)


def test_betainc_matches_scipy() -> None:
    from scipy.special import betainc

    rng = np.random.default_rng(1)
    a, b, x = rng.uniform(0.3, 60, 500), rng.uniform(0.3, 60, 500), rng.uniform(0, 1, 500)
    np.testing.assert_allclose(stats.betainc(a, b, x), betainc(a, b, x), rtol=1e-9, atol=1e-13)


def test_welch_interval_and_p_match_scipy() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        x = rng.lognormal(0, 0.05, rng.integers(2, 8))
        y = rng.lognormal(0.03, 0.08, rng.integers(2, 8))
        r = stats.ratio_test(x, y)
        ref = ss.ttest_ind(np.log(y), np.log(x), equal_var=False)
        lo, hi = np.exp(ref.confidence_interval(0.95))
        assert r.method == "welch"
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-8)
        assert (r.low, r.high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
        assert r.ratio == pytest.approx(math.exp(np.log(y).mean() - np.log(x).mean()))


def test_paired_interval_and_p_match_scipy() -> None:
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0, 0.1, 5)  # a big shared per-seed offset: pairing removes it
    x = np.exp(seed_effect + rng.normal(0, 0.01, 5))
    y = np.exp(seed_effect + 0.05 + rng.normal(0, 0.01, 5))
    r = stats.ratio_test(x, y, paired=True)
    ref = ss.ttest_rel(np.log(y), np.log(x))
    lo, hi = np.exp(ref.confidence_interval(0.95))
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (r.low, r.high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
    assert r.significant and r.low > 1.0
    # Unpaired, the shared seed offsets drown the same 5 % effect.
    assert not stats.ratio_test(x, y).significant


def test_one_run_has_no_interval_and_within_run_is_labelled() -> None:
    r = stats.ratio_test([1.0], [1.1, 1.2])
    assert r.method == "none" and math.isnan(r.low) and r.ratio == pytest.approx(math.sqrt(1.1 * 1.2))
    w = stats.within_run_test(np.full(50, 0.1) * np.linspace(0.99, 1.01, 50), np.full(50, 0.11))
    assert w.method == "within-run" and w.low < w.ratio < w.high


@pytest.mark.parametrize("lo,hi,p,expected", [
    (1.05, 1.20, 0.001, stats.FASTER),
    (0.80, 0.95, 0.001, stats.SLOWER),
    (1.01, 1.06, 0.01, stats.WITHIN_NOISE),   # significant, interval reaches into the band
    (0.99, 1.01, 0.001, stats.WITHIN_NOISE),
    (0.95, 1.10, 0.30, stats.NO_DIFFERENCE),
    (math.nan, math.nan, math.nan, stats.INCONCLUSIVE),
])
def test_verdicts(lo: float, hi: float, p: float, expected: str) -> None:
    assert stats.verdict(lo, hi, p, 0.02) == expected


def test_runs_needed_reaches_the_power_it_promises() -> None:
    """Reference: the exact power of the two-sample t test from scipy's noncentral t."""
    sd, effect = 0.03, math.log(1.04)
    n = stats.runs_needed(sd, effect)

    def power(n: int) -> float:
        df = 2 * n - 2
        nc = effect / (sd * math.sqrt(2 / n))
        q = ss.t.ppf(0.975, df)
        return ss.nct.sf(q, df, nc) + ss.nct.cdf(-q, df, nc)

    assert n is not None and power(n) >= 0.78  # the textbook formula is a close approximation
    assert power(n - 1) < 0.8
    assert stats.runs_needed(sd, 0.0) is None
    assert stats.runs_needed(0.5, 1e-6, cap=50) == 50


def _mser_brute(values: np.ndarray, block: int, max_fraction: float) -> int:
    m = values.size // block
    z = values[: m * block].reshape(m, block).mean(axis=1)
    best, best_d = math.inf, 0
    for d in range(max(1, int(m * max_fraction))):
        rest = z[d:]
        score = float(((rest - rest.mean()) ** 2).sum()) / (rest.size**2)
        if score < best - 1e-15:
            best, best_d = score, d
    return best_d * block


def test_warmup_matches_brute_force_mser_and_finds_planted_warmup() -> None:
    rng = np.random.default_rng(5)
    for warm in (0, 10, 40, 150):
        times = 0.05 * np.exp(rng.normal(0, 0.05, 1000))
        times[:warm] *= np.linspace(4.0, 1.2, warm) if warm else 1
        assert int(np.argmin(stats.mser_curve(np.log(times)))) * 5 == _mser_brute(np.log(times), 5, 0.5)
        w = stats.detect_warmup(times)
        assert warm <= w <= warm + 15, (warm, w)


def test_warmup_detection_rate_over_many_runs() -> None:
    """Over 200 noisy runs the planted 40-batch warm-up is found exactly in at least 95 %."""
    found = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        times = 0.05 * np.exp(rng.normal(0, 0.05, 1000))
        times[:40] *= np.linspace(4.0, 1.2, 40)
        found.append(stats.detect_warmup(times))
    assert np.mean(np.array(found) == 40) >= 0.95


def test_warmup_ignores_one_late_pause_and_short_runs() -> None:
    rng = np.random.default_rng(6)
    times = 0.05 * np.exp(rng.normal(0, 0.03, 500))
    times[300] = 5.0  # a GC pause late in the run is an outlier, not warm-up
    assert stats.detect_warmup(times) < 20
    assert stats.detect_warmup(np.ones(10)) == 0


def test_tukey_fences_match_numpy_percentiles() -> None:
    v = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 3.0, 1.02])
    q1, q3 = np.percentile(v, [25, 75])
    assert stats.tukey_fences(v) == (pytest.approx(q1 - 1.5 * (q3 - q1)), pytest.approx(q3 + 1.5 * (q3 - q1)))
    assert stats.outlier_mask(v).tolist() == [False] * 5 + [True, False]


def test_reduce_steps() -> None:
    rng = np.random.default_rng(7)
    step = 0.1 * np.exp(rng.normal(0, 0.02, 2000))
    step[:30] = 0.5
    step[1000] = 2.0
    wait = step * 0.25
    s = stats.reduce_steps(step, wait, np.full(2000, 32.0))
    assert 30 <= s.warmup_batches <= 40
    steady = step[s.warmup_batches:]
    assert s.median_s == pytest.approx(np.median(steady))
    assert s.throughput == pytest.approx(32 * steady.size / steady.sum())
    assert s.data_wait_fraction == pytest.approx(0.25)
    assert s.outliers >= 1 and s.outlier_max_s == pytest.approx(2.0)
    assert s.warmup_cost_s == pytest.approx(step[: s.warmup_batches].sum() - s.warmup_batches * s.median_s)
    assert s.spread < 0.05
