"""Sequential plans under optional stopping: how often wrong, how many seeds? Prints; asserts nothing.

    python benchmarks/sequential_power.py [--plans 4000] [--max-seeds 10] [--spending pocock] [--cli N]

Each simulated plan runs seeds in pairs and applies the stopping rule of
``harness.compare.sequential`` after every pair from the third on (the rule `harness run
--until-confident` uses), up to ``--max-seeds``. Per-run statistics come from the generator of
tests/test_compare_simulation.py: heavy-tailed (t5) run-to-run noise with coefficient of
variation CV, a quarter of its variance shared by a seed's runs in both modes (``--shared``; it
makes the two-sample interval conservative, 0 is the harshest case), plus the within-run noise of
a 3000-batch run. Scenarios: A/A at CV 2 % and 5 %, and true slow-downs of 3, 5, 10
and 20 % at CV 2 %.

Columns: wrong = a resolved verdict that contradicts the truth (FASTER/SLOWER in A/A, or the
wrong side, or "within noise" for a change outside the band) — the goal is <= 5 %; miss = a plan
with any interval it looked at not holding the truth (the simultaneous coverage the design
promises, <= 5 % by construction); seeds = mean seeds a mode when the plan stopped (goals: 20 %
<= 3, 10 % <= 5). Then the same for naive peeking (a fixed 95 % interval at every look) and for
O'Brien-Fleming-type spending, as references.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.compare import sequential as seq  # noqa: E402

BATCHES, BATCH_SD = 3000, 0.08
SCENARIOS = [("A/A", 0.02, 0.0), ("A/A", 0.05, 0.0), ("3 % slower", 0.02, 0.03), ("5 % slower", 0.02, 0.05),
             ("10 % slower", 0.02, 0.10), ("20 % slower", 0.02, 0.20)]


def generate(rng: np.random.Generator, plans: int, seeds: int, cv: float, slower: float, shared: float = 0.25
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """Log per-run speed statistics of both modes, and the true log speed ratio."""
    truth = -math.log1p(slower)
    seed_part = rng.normal(0, cv * math.sqrt(shared), size=(plans, seeds))

    def runs(effect: float) -> np.ndarray:
        own = rng.standard_t(5, size=(plans, seeds)) * cv * math.sqrt(1 - shared) * math.sqrt(3 / 5)
        within = rng.normal(0, BATCH_SD / math.sqrt(BATCHES), size=(plans, seeds))
        return effect + seed_part + own + within

    return runs(0.0), runs(truth), truth


def naive(base: np.ndarray, cand: np.ndarray, design: seq.Design) -> dict[str, np.ndarray]:
    """The peeking reference: a fixed-sample 95 % interval at every look (nominal level 0.05)."""
    fixed = seq.Design(design.max_seeds, design.first_look, design.alpha, design.spending, design.noise_band)
    levels = np.full(len(fixed.looks), design.alpha)
    original = seq.nominal_levels
    seq.nominal_levels = lambda d: levels  # type: ignore[assignment]
    try:
        return seq.run_plans(base, cand, fixed)
    finally:
        seq.nominal_levels = original  # type: ignore[assignment]


def row(name: str, cv: float, plans: dict[str, np.ndarray], truth: float, band: float) -> str:
    code = plans["code"]
    share = {s: float(np.mean(code == i)) for i, s in enumerate(seq.STATE_CODES)}
    wrong = float(np.mean(seq.wrong_verdict(code, truth, band)))
    miss = 1.0 - float(np.mean(seq.coverage(plans, truth)))
    return (f"{name:<12} {cv:>4.0%} {wrong:>7.2%} {miss:>7.2%} {plans['seeds'].mean():>6.2f} "
            f"{share[seq.FASTER]:>7.1%} {share[seq.SLOWER]:>7.1%} {share[seq.IN_BAND]:>7.1%} "
            f"{share[seq.UNRESOLVED]:>7.1%}")


def table(title: str, rule, args: argparse.Namespace, design: seq.Design) -> None:
    print(f"\n{title}")
    print(f"{'truth':<12} {'CV':>4} {'wrong':>7} {'miss':>7} {'seeds':>6} {'FASTER':>7} {'SLOWER':>7} "
          f"{'in band':>7} {'unres.':>7}")
    for i, (name, cv, slower) in enumerate(SCENARIOS):
        rng = np.random.default_rng(1000 + i)
        base, cand, truth = generate(rng, args.plans, design.max_seeds, cv, slower, args.shared)
        print(row(name, cv, rule(base, cand, design), truth, design.noise_band))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=4000, help="simulated plans per scenario")
    parser.add_argument("--max-seeds", type=int, default=10)
    parser.add_argument("--spending", choices=seq.SPENDING, default="pocock")
    parser.add_argument("--shared", type=float, default=0.25, help="share of run variance common to a seed")
    parser.add_argument("--cli", type=int, default=0, metavar="N",
                        help="also run N plans a scenario through the real CLI on replayed runs (slow: ~15 s a plan)")
    args = parser.parse_args()
    design = seq.Design(max_seeds=args.max_seeds, spending=args.spending)
    t0 = time.perf_counter()
    levels = ", ".join(f"{n}: {p:.4f}" for n, p in zip(design.looks, seq.nominal_levels(design)))
    print(f"design: {design.spending} spending, alpha {design.alpha}, looks after 3..{design.max_seeds} "
          f"seeds, noise band {design.noise_band:.0%}; {args.plans} plans per scenario, "
          f"{args.shared:.0%} of run variance shared by a seed")
    print(f"nominal two-sided level per look (seeds: level): {levels}")
    table(f"sequential ({design.spending}), the rule harness uses", seq.run_plans, args, design)
    other = "obrien-fleming" if design.spending == "pocock" else "pocock"
    table(f"reference: {other} spending", seq.run_plans, args,
          seq.Design(max_seeds=args.max_seeds, spending=other))
    table("reference: naive peeking (95 % interval at every look)", naive, args, design)
    if args.cli:
        cli_plans(args.cli, args.max_seeds)
    print(f"\n({time.perf_counter() - t0:.1f} s)")


def cli_plans(plans: int, max_seeds: int) -> None:
    """A few plans through the real CLI (local backend) on replayed recorded runs (tests/test_cli_sequential.py)."""
    import json
    import tempfile

    from click.testing import CliRunner

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_cli_sequential import _experiment, _state

    from harness.cli import cli

    print(f"\nthrough the real CLI (`harness run baseline optimization --until-confident --max-seeds {max_seeds} "
          f"--backend local`), {plans} plans a scenario, replayed runs (40 batches of ~15 ms, 2 % run noise):")
    for name, slower in (("20 % slower", 0.20), ("A/A", 0.0)):
        outcomes = []
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(plans):
                root = _experiment(Path(tmp) / f"p{k}", slower)
                result = CliRunner().invoke(cli, ["run", "baseline", "optimization", "--until-confident",
                                                  "--max-seeds", str(max_seeds), "--backend", "local", "-e", str(root)])
                state = _state(root)["sequential"] if result.exit_code == 0 else {"decision": "error", "looks": []}
                outcomes.append((state["decision"], state["looks"][-1]["seeds"] if state["looks"] else 0))
        decisions = {d: sum(1 for o in outcomes if o[0] == d) for d in dict.fromkeys(o[0] for o in outcomes)}
        wrong = sum(1 for d, _ in outcomes if (d in ("FASTER", "SLOWER") if slower == 0 else d != "SLOWER"
                                                and d in ("FASTER", "within noise")))
        print(f"  {name:<12} decisions {json.dumps(decisions)}, wrong {wrong}/{plans}, mean seeds "
              f"{sum(o[1] for o in outcomes) / plans:.2f}")


if __name__ == "__main__":
    main()
