"""How fast and how lean is ``harness compare`` on big runs?

2 modes x 5 seeds x 200,000 batches (each run's results.json also holds a loss and an accuracy
per batch, as seed 004's monitor logs them: ~5 arrays of 200,000 entries, ~25 MB a file).
Prints, each measured in a fresh child process so peak memory is that of the measured work:

* reference: ``json.load`` of the 10 files and nothing else (the floor any JSON reader pays);
* compare, cold:   ``compare_experiment`` (load, reduce, test, diagnose) on results copied in from
  elsewhere: nothing reduced yet;
* reduce as each run ends: ``compare.cache.warm`` per run, what ``harness run`` does as a run completes;
* compare, after run: ``compare_experiment`` reading the reduced runs from results/comparison/.cache,
  what ``harness compare`` costs after ``harness run``; targets: <= 2 s, <= 500 MB;
* reports:   ``compare_and_report(plots=False)`` (adds comparison.json / report.md / report.html), cached;
* plots:     ``compare_and_report`` with plots, cached.

Usage: python benchmarks/compare_scale.py [--batches 200000] [--seeds 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
what, exp = sys.argv[1], Path(sys.argv[2])
t0 = time.perf_counter()
if what == "reference":
    for path in sorted(exp.glob("results/*/*/results.json")):
        with open(path, encoding="utf-8") as f:
            json.load(f)
elif what == "warm":
    from harness.compare.cache import warm
    for path in sorted(exp.glob("results/*/*/results.json")):
        assert warm(exp, path.parent.parent.name, path.parent)
elif what == "compare":
    from harness.compare import compare_experiment
    comp = compare_experiment(exp)
    assert comp.headline is not None
else:
    from harness.compare import compare_and_report, render_result
    render_result(compare_and_report(experiments=[exp], plots=(what == "plots")), "table", 120)
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(what: str, exp: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, what, str(exp)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _show(label: str, r: dict[str, float], ref: dict[str, float]) -> None:
    print(f"{label:<30} {r['seconds']:.2f} s ({r['seconds'] / ref['seconds']:.2f}x reference), "
          f"peak {r['peak_mb']:.0f} MB ({r['peak_mb'] / ref['peak_mb']:.2f}x reference)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where to write the experiment (default: a temp folder)")
    args = parser.parse_args()

    from fixtures.results.synth import write_experiment

    with tempfile.TemporaryDirectory() as tmp:
        exp = (args.dir or Path(tmp)) / "scale"
        t0 = time.perf_counter()
        if not (exp / "results").exists():
            write_experiment(exp, seeds=list(range(args.seeds)), compact=True, modes={
                "baseline": {"n_batches": args.batches, "step": 0.05},
                "optimization": {"n_batches": args.batches, "step": 0.045}})
        size = sum(p.stat().st_size for p in exp.glob("results/*/*/results.json")) / 1e6
        print(f"data: 2 modes x {args.seeds} seeds x {args.batches} batches, {size:.0f} MB of results.json "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        ref = measure("reference", exp)
        print(f"reference json.load only: {ref['seconds']:.2f} s, peak {ref['peak_mb']:.0f} MB")
        import shutil

        shutil.rmtree(exp / "results" / "comparison", ignore_errors=True)
        cold = measure("compare", exp)
        _show("compare_experiment, cold", cold, ref)
        shutil.rmtree(exp / "results" / "comparison", ignore_errors=True)
        warmed = measure("warm", exp)
        runs = 2 * args.seeds
        print(f"{'reduce as each run ends':<30} {warmed['seconds'] / runs:.2f} s per run ({warmed['seconds']:.2f} s "
              f"for {runs}; `harness run` does this when a run completes)")
        for what, label in (("compare", "compare_experiment, after run"), ("reports", "compare --no-plots"),
                            ("plots", "compare with plots")):
            _show(label, measure(what, exp), ref)
        print("targets for compare_experiment: <= 2 s, <= 500 MB. 'after run' is what `harness compare` costs "
              "after `harness run`; 'cold' (results copied in from elsewhere) is bound by the JSON parse: see the "
              "reference")


if __name__ == "__main__":
    main()
