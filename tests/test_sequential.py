"""The sequential decision rule: boundaries, repeated intervals, and error rates under optional stopping.

The simulation runs the same generator as benchmarks/sequential_power.py (2000 plans a scenario,
vectorised: about a second), which prints the full table quoted in docs/statistics.md.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from harness.compare import sequential as seq

_spec = importlib.util.spec_from_file_location(
    "sequential_power", Path(__file__).resolve().parent.parent / "benchmarks" / "sequential_power.py")
power = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(power)  # type: ignore[union-attr]

PLANS = 2000
FIVE_EQUAL = (0.2, 0.4, 0.6, 0.8, 1.0)


def test_boundaries_match_published_lan_demets_values() -> None:
    # gsDesign (Anderson), K = 5 equally spaced looks, one-sided 0.025 per side: sfLDOF and sfLDPocock.
    obf = seq._boundaries(FIVE_EQUAL, "obrien-fleming", 0.05)
    pocock = seq._boundaries(FIVE_EQUAL, "pocock", 0.05)
    assert obf == pytest.approx((4.8769, 3.3569, 2.6803, 2.2898, 2.0310), abs=2e-4)
    assert pocock == pytest.approx((2.4380, 2.4268, 2.4102, 2.3966, 2.3860), abs=2e-4)


def test_boundaries_spend_alpha_as_designed_on_simulated_brownian_paths() -> None:
    design = seq.Design(max_seeds=10)
    t = np.array(design.looks) / design.max_seeds
    rng = np.random.default_rng(3)
    steps = rng.normal(size=(400_000, len(t))) * np.sqrt(np.diff(np.concatenate([[0.0], t])))
    z = np.abs(np.cumsum(steps, axis=1)) / np.sqrt(t)
    crossed = np.maximum.accumulate(z > seq.boundaries(design), axis=1).mean(axis=0)
    expected = [seq.spent("pocock", 0.05, x) for x in t]
    assert crossed == pytest.approx(expected, abs=1.5e-3)
    assert crossed[-1] == pytest.approx(0.05, abs=1.5e-3)


def _simulate(cv: float, slower: float, shared: float, seed: int, design: seq.Design
              ) -> tuple[dict[str, np.ndarray], float]:
    base, cand, truth = power.generate(np.random.default_rng(seed), PLANS, design.max_seeds, cv, slower, shared)
    return seq.run_plans(base, cand, design), truth


@pytest.mark.parametrize(("cv", "slower"), [(0.02, 0.0), (0.05, 0.0), (0.02, 0.03), (0.02, 0.05),
                                             (0.02, 0.10), (0.02, 0.20)])
def test_false_verdicts_stay_under_5_percent_with_optional_stopping(cv: float, slower: float) -> None:
    design = seq.Design()
    # No seed-shared noise: the harshest case for the two-sample interval.
    plans, truth = _simulate(cv, slower, 0.0, seed=int(cv * 1000 + slower * 100), design=design)
    wrong = seq.wrong_verdict(plans["code"], truth, design.noise_band).mean()
    missed = 1.0 - seq.coverage(plans, truth).mean()
    assert wrong <= 0.05
    assert missed <= 0.06  # simultaneous coverage of every interval a plan looked at (~0.05 by design)
    if slower == 0.0:  # A/A: stops at the maximum or inside the band, never FASTER/SLOWER (< 1 %)
        codes = plans["code"]
        assert np.mean((codes == 1) | (codes == 2)) < 0.01
        assert set(np.unique(codes)) <= {seq.STATE_CODES.index(seq.UNRESOLVED), seq.STATE_CODES.index(seq.IN_BAND),
                                          seq.STATE_CODES.index(seq.FASTER), seq.STATE_CODES.index(seq.SLOWER)}


def test_large_changes_settle_in_few_seeds() -> None:
    design = seq.Design()
    seeds = {}
    for slower in (0.05, 0.10, 0.20):
        plans, _ = _simulate(0.02, slower, 0.25, seed=int(slower * 1000), design=design)
        assert np.mean(plans["code"] == seq.STATE_CODES.index(seq.SLOWER)) > 0.7
        seeds[slower] = plans["seeds"].mean()
    assert seeds[0.20] <= 3.02
    assert seeds[0.10] <= 5.0
    assert seeds[0.20] < seeds[0.10] < seeds[0.05]


def test_naive_peeking_misses_far_more_often_than_the_design() -> None:
    """The reason for the design: a 95 % interval at every look loses its coverage."""
    design = seq.Design()
    base, cand, truth = power.generate(np.random.default_rng(11), PLANS, 10, 0.05, 0.0, 0.0)
    naive = 1.0 - seq.coverage(power.naive(base, cand, design), truth).mean()
    sequential = 1.0 - seq.coverage(seq.run_plans(base, cand, design), truth).mean()
    assert naive > 0.10
    assert sequential < 0.06
    assert seq.nominal_levels(design) == pytest.approx(seq.nominal_levels(seq.Design()))  # restored


def test_decide_matches_the_vectorised_look_and_reads_speeds() -> None:
    design = seq.Design()
    base = np.array([100.0, 102.0, 99.0, 101.0])
    cand = base * 0.8 * np.array([1.0, 1.01, 0.99, 1.0])
    look = seq.decide(base, cand, design)
    r = seq.look_arrays(np.log(base), np.log(cand), design)
    assert look.seeds == 4
    assert look.ratio == pytest.approx(math.exp(r["diff"]))
    assert (look.low, look.high) == pytest.approx((math.exp(r["low"]), math.exp(r["high"])))
    assert look.state == seq.SLOWER and look.resolved and look.stop
    assert seq.Look.from_dict(look.to_dict()) == look
    # Swapping the modes inverts the ratio and the interval (log scale: symmetric in faster/slower).
    swapped = seq.decide(cand, base, design)
    assert (swapped.ratio, swapped.low, swapped.high) == pytest.approx((1 / look.ratio, 1 / look.high, 1 / look.low))
    assert swapped.state == seq.FASTER


def test_the_interval_widens_for_peeking_compared_with_a_fixed_95_percent_interval() -> None:
    from harness.compare import stats

    rng = np.random.default_rng(5)
    base, cand = np.exp(rng.normal(0, 0.02, 5)), np.exp(rng.normal(0.01, 0.02, 5))
    look = seq.decide(base, cand, seq.Design())
    fixed = stats.ratio_test(base, cand)
    assert look.ratio == pytest.approx(fixed.ratio)
    assert look.low < fixed.low and look.high > fixed.high


def test_states_at_and_before_the_maximum() -> None:
    design = seq.Design(max_seeds=5)
    assert seq.state_codes(np.log(0.99), np.log(1.01), 4, design) == seq.STATE_CODES.index(seq.IN_BAND)
    assert seq.state_codes(np.log(0.9), np.log(1.1), 4, design) == seq.STATE_CODES.index(seq.CONTINUE)
    assert seq.state_codes(np.log(0.9), np.log(1.1), 5, design) == seq.STATE_CODES.index(seq.UNRESOLVED)
    assert seq.state_codes(np.log(1.03), np.log(1.1), 3, design) == seq.STATE_CODES.index(seq.FASTER)
    assert seq.state_codes(np.log(0.9), np.log(0.97), 3, design) == seq.STATE_CODES.index(seq.SLOWER)


def test_progress_lines() -> None:
    design = seq.Design()
    slower = seq.Look(4, 0.939, 0.902, 0.978, seq.SLOWER)
    assert seq.progress_line(slower, design) == "after 4 seeds: \u22126.1 % [\u22129.8, \u22122.2] \u2014 resolved: SLOWER"
    going = seq.Look(3, 1.01, 0.95, 1.07, seq.CONTINUE)
    assert seq.progress_line(going, design) == ("after 3 seeds: +1.0 % [\u22125.0, +7.0] \u2014 not resolved yet "
                                                "(needs the interval beyond or inside \u00b12 %); next: pair 4 "
                                                "of at most 10")
    flat = seq.Look(6, 1.0, 0.99, 1.012, seq.IN_BAND)
    assert seq.progress_line(flat, design).endswith("resolved: within noise (\u00b12 %)")
    done = seq.Look(10, 1.0, 0.97, 1.04, seq.UNRESOLVED)
    assert seq.progress_line(done, design).endswith("not resolved at the maximum of 10 seeds")


def test_bad_designs_and_looks_are_refused() -> None:
    with pytest.raises(ValueError, match="first_look"):
        seq.Design(max_seeds=2)
    with pytest.raises(ValueError, match="spending"):
        seq.Design(spending="haybittle")
    with pytest.raises(ValueError, match="a look needs"):
        seq.decide([1.0, 1.0], [1.0, 1.0], seq.Design())
    with pytest.raises(ValueError, match="positive"):
        seq.decide([1.0, 1.0, -1.0], [1.0, 1.0, 1.0], seq.Design())
    assert seq.Design.from_dict(seq.Design(max_seeds=6).to_dict()) == seq.Design(max_seeds=6)
