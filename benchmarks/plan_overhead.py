"""What does a plan add per run, beyond the run itself? (target: at most 0.5 s)

One experiment whose modes exit at once; N runs (modes × seeds), made in one process, interleaved:
  plan       ``plan.execute``: plan expansion, lock, state.json rewritten at every transition,
             progress lines, errors bookkeeping, and each run through ``backends.run_mode``
  direct     the same runs through ``backends.run_mode`` in a plain loop (the reference)
and prints, per run: the plan's overhead over the direct loop (what scheduling costs), and the
plan's wall time beyond each run's own ``run.wall_time`` in results.json (what the backend and
agent start-up cost on top, for scale).

Usage: python benchmarks/plan_overhead.py [--runs 12] [--repeat 3] [--backend local|docker]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_experiment(root: Path, seeds: int) -> Path:
    root.mkdir(parents=True)
    cfg = {"competition": "planbench", "kaggle_slug": "planbench", "framework": "pytorch",
           "modes": {"baseline": "noop.py", "optimization": "noop.py"}, "seeds": list(range(seeds)),
           "sampling_interval": 0.1, "resources": {"memory": None}}
    (root / "experiment_config.json").write_text(json.dumps(cfg))
    (root / "noop.py").write_text("pass\n")
    return root


def own_wall_times(results: Path) -> list[float]:
    out = []
    for path in results.glob("*/*/results.json"):
        if path.parent.parent.name not in ("plans", "comparison"):
            out.append(json.loads(path.read_text())["run"]["wall_time"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="runs per plan (even: 2 modes × runs/2 seeds)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    args = parser.parse_args()

    from harness.backends import RunOptions, RunRequest, run_mode
    from harness.experiment import load_experiment
    from harness.plan import execute, interleave

    seeds = max(1, args.runs // 2)
    n = 2 * seeds
    plan_per_run, direct_per_run, beyond_own = [], [], []
    with tempfile.TemporaryDirectory(prefix="harness-planbench-") as tmp:
        for k in range(args.repeat + 1):  # the first round warms caches (and builds the image) and is dropped
            exp = load_experiment(make_experiment(Path(tmp) / f"plan{k}", seeds))
            start = time.perf_counter()
            failed = execute(exp, ["all"], None, RunOptions(backend=args.backend), echo=None).failed
            plan_total = time.perf_counter() - start
            if failed:
                sys.exit(f"{len(failed)} run(s) failed: {failed[0].message}")
            own = own_wall_times(exp.results_dir)

            ref = load_experiment(make_experiment(Path(tmp) / f"direct{k}", seeds))
            start = time.perf_counter()
            for mode, seed in interleave(["baseline", "optimization"], list(range(seeds))):
                outcome = run_mode(RunRequest(experiment=ref, mode=mode, seed=seed,
                                              options=RunOptions(backend=args.backend), echo=None))
                if not outcome.ok:
                    sys.exit(f"direct run failed: {outcome.message}")
            direct_total = time.perf_counter() - start
            if k == 0:
                continue
            plan_per_run.append(plan_total / n)
            direct_per_run.append(direct_total / n)
            beyond_own.append((plan_total - sum(own)) / n)

    plan_s, direct_s = statistics.median(plan_per_run), statistics.median(direct_per_run)
    overhead = plan_s - direct_s
    print(f"backend {args.backend}, {n} runs per plan, {args.repeat} rounds (medians per run)")
    print(f"  plan   (execute)            {plan_s * 1000:8.1f} ms")
    print(f"  direct (run_mode loop)      {direct_s * 1000:8.1f} ms")
    print(f"  ratio plan/direct           {plan_s / direct_s:8.3f}")
    print(f"  scheduling overhead per run {overhead * 1000:8.1f} ms   (target <= 500 ms: "
          f"{'met' if overhead <= 0.5 else 'NOT met'})")
    print(f"  beyond run.wall_time        {statistics.median(beyond_own) * 1000:8.1f} ms   "
          "(backend + agent start-up included, for scale)")


if __name__ == "__main__":
    main()
