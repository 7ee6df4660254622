"""Many synthetic experiments with realistic run-to-run noise: how often is each verdict wrong?

The numbers this prints (pytest -s) are quoted in docs/statistics.md. Vectorised across
experiments so the whole file runs in a few seconds.
"""

from __future__ import annotations

import numpy as np

from harness.compare import stats

K = 4000  # experiments per scenario
RUN_SD = 0.02  # run-to-run sd of a run's steady-state statistic (log scale): 2 %, typical on shared CPUs
SEED_SD = 0.01  # part of it shared by both modes' runs of one seed (data order, init)
BATCH_SD = 0.08  # batch-to-batch noise inside a run
BATCHES = 200


def _per_run_logs(rng: np.random.Generator, n: int, effect: float, seed_part: np.ndarray) -> np.ndarray:
    """Log per-run statistic: effect + shared seed part + heavy-tailed run noise + within-run noise."""
    run_noise = rng.standard_t(5, size=(K, n)) * RUN_SD * np.sqrt(3 / 5)  # t5 scaled to sd RUN_SD
    within = rng.normal(0, BATCH_SD / np.sqrt(BATCHES), size=(K, n))
    return effect + seed_part + run_noise + within


def _simulate(n: int, effect: float, paired: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seed_part = rng.normal(0, SEED_SD, size=(K, n))
    base = _per_run_logs(rng, n, 0.0, seed_part)
    cand = _per_run_logs(rng, n, effect, seed_part)
    # Throughput: the speed ratio is the metric ratio itself.
    r = stats.paired_log_arrays(base, cand) if paired else stats.welch_log_arrays(base, cand)
    return stats.verdict_codes(np.exp(r["low"]), np.exp(r["high"]), r["p"], 0.02)


def _rates(codes: np.ndarray) -> dict[str, float]:
    return {name: float(np.mean(codes == i)) for i, name in enumerate(stats.VERDICT_CODES)}


def test_aa_false_verdict_rate_is_at_most_5_percent() -> None:
    for n in (3, 5):
        for paired in (False, True):
            rates = _rates(_simulate(n, 0.0, paired, seed=n * 10 + paired))
            false_verdict = rates[stats.FASTER] + rates[stats.SLOWER]
            significant = false_verdict + rates[stats.WITHIN_NOISE]
            print(f"A/A n={n} {'paired' if paired else 'welch '}: FASTER/SLOWER {false_verdict:.3%}, "
                  f"significant {significant:.2%}")
            assert false_verdict <= 0.05
            # The test is calibrated: about alpha of A/A experiments are significant, not far more or less.
            # (Heavy-tailed run noise makes t slightly conservative.)
            assert 0.02 <= significant <= 0.07


def test_power_for_a_5_percent_effect_at_3_and_5_seeds() -> None:
    effect = np.log(1.05)
    power = {}
    for n in (3, 5):
        for paired in (False, True):
            rates = _rates(_simulate(n, effect, paired, seed=100 + n * 10 + paired))
            power[(n, paired)] = rates[stats.FASTER]
            detected = rates[stats.FASTER] + rates[stats.WITHIN_NOISE]
            power[(n, paired, "significant")] = detected
            print(f"5 % faster, n={n} {'paired' if paired else 'welch '}: FASTER {rates[stats.FASTER]:.1%}, "
                  f"within noise {rates[stats.WITHIN_NOISE]:.1%}, no difference {rates[stats.NO_DIFFERENCE]:.1%}, "
                  f"SLOWER {rates[stats.SLOWER]:.2%}; significant {detected:.1%}")
            assert rates[stats.SLOWER] < 0.001  # never the wrong direction
    assert power[(5, False)] > power[(3, False)] + 0.1
    assert power[(5, True)] > power[(3, True)]
    # FASTER needs the whole interval beyond the 2 % band; significance alone comes much sooner.
    assert power[(5, False, "significant")] > 0.7
    assert power[(5, False, "significant")] > power[(3, False, "significant")]


def test_pooled_batch_test_calls_differences_that_are_not_there() -> None:
    """Why runs are the unit: Welch on pooled batch times of A/A experiments is wrong most of the time."""
    rng = np.random.default_rng(7)
    k, n = 1000, 3
    offsets = rng.normal(0, RUN_SD, size=(2, k, n, 1))
    batches = offsets + rng.normal(0, BATCH_SD, size=(2, k, n, BATCHES))
    pooled = stats.welch_log_arrays(batches[0].reshape(k, -1), batches[1].reshape(k, -1))
    per_run = stats.welch_log_arrays(np.median(batches[0], axis=-1), np.median(batches[1], axis=-1))
    wrong_pooled = float(np.mean(pooled["p"] < 0.05))
    wrong_runs = float(np.mean(per_run["p"] < 0.05))
    print(f"A/A significant: pooled batches {wrong_pooled:.1%}, per-run medians {wrong_runs:.1%}")
    assert wrong_pooled > 0.4  # about 57 % with these noise levels, against alpha = 5 %
    assert wrong_runs < 0.08
