"""How fast and how lean is ``harness compare`` on big runs?

2 modes x 5 seeds x 200,000 batches (each run's results.json also holds a loss and an accuracy
per batch, as seed 004's monitor logs them: ~5 arrays of 200,000 entries, ~25 MB a file).
Prints, each measured in a fresh child process so peak memory is that of the measured work:

* reference: ``json.load`` of the 10 files and nothing else (the floor any JSON reader pays);
* compare, cold:   ``compare_experiment`` (load, reduce, test, diagnose) on results copied in from
  elsewhere: nothing reduced yet, but each run has the columnar twin the agent writes beside its
  results.json (``batches-<digest>.npz``, harness/columnar.py); targets: <= 2 s, <= 500 MB;
* compare, cold, JSON only: the same without the twins (results from an older harness): the
  fallback, bound by the JSON parse;
* reduce as each run ends: ``compare.cache.warm`` per run, what ``harness run`` does as a run completes;
* compare, after run: ``compare_experiment`` reading the reduced runs from results/comparison/.cache,
  what ``harness compare`` costs after ``harness run``; targets: <= 2 s, <= 500 MB;
* reports:   ``compare_and_report(plots=False)`` (adds comparison.json / report.md / report.html), cached;
* plots:     ``compare_and_report`` with plots, cached.
* formats: reading the same per-batch arrays as npz (what the twin is) and, when pyarrow is
  importable, as Arrow IPC (Feather v2) and Parquet, with pyarrow's own import time: does the
  dependency pay for itself?

Usage: python benchmarks/compare_scale.py [--batches 200000] [--seeds 5] [--dir DIR] [--formats-only]
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
elif what == "twins":
    from harness.results.columnar import write
    for path in sorted(exp.glob("results/*/*/results.json")):
        write(path.parent)
elif what == "formats":
    import numpy as np
    from harness.results.columnar import digest
    runs = sorted(p.parent for p in exp.glob("results/*/*/results.json"))
    out = {}
    t = time.perf_counter()
    for run in runs:
        digest(run / "results.json")
    out["digest"] = time.perf_counter() - t
    t = time.perf_counter()
    arrays = []
    for run in runs:
        with np.load(next(run.glob("batches-*.npz")), allow_pickle=False) as npz:
            names = [str(n).split("/")[-1] for n in npz["__names__"]]
            arrays.append({name: npz[f"a{i}"] for i, name in enumerate(names)})
    out["npz"] = time.perf_counter() - t
    out["npz_mb"] = sum(sum(p.stat().st_size for p in r.glob("batches-*.npz")) for r in runs) / 1e6
    try:
        t = time.perf_counter()
        import pyarrow as pa, pyarrow.feather as feather, pyarrow.parquet as pq
        out["pyarrow_import"] = time.perf_counter() - t
    except ImportError:
        print(json.dumps({"seconds": 0.0, "peak_mb": 0.0, "formats": out}))
        sys.exit(0)
    import tempfile as tf
    tmp = Path(tf.mkdtemp())
    def table(a):
        cols = {}
        for k, v in a.items():
            for j in range(v.shape[1]):
                cols[f"{k}.{j}"] = pa.array(v[:, j])
        n = max(len(c) for c in cols.values())
        return {k: c for k, c in cols.items()}, n
    for fmt in ("feather", "parquet"):
        files = []
        for i, a in enumerate(arrays):
            cols, _ = table(a)
            # columns of different lengths: one table per array family, as a real layout would need
            for k in a:
                tb = pa.table({c: cols[c] for c in cols if c.startswith(k + ".")})
                path = tmp / f"{i}-{k}.{fmt}"
                (feather.write_feather(tb, path, compression="uncompressed") if fmt == "feather"
                 else pq.write_table(tb, path))
                files.append(path)
        t = time.perf_counter()
        for path in files:
            tb = feather.read_table(path) if fmt == "feather" else pq.read_table(path)
            [np.asarray(c) for c in tb.columns]
        out[fmt] = time.perf_counter() - t
        out[fmt + "_mb"] = sum(p.stat().st_size for p in files) / 1e6
    print(json.dumps({"seconds": 0.0, "peak_mb": 0.0, "formats": out}))
    sys.exit(0)
elif what == "compare":
    from harness.compare import compare_experiment
    comp = compare_experiment(exp)
    assert comp.headline is not None
else:
    from harness.compare import compare_and_report, render_result
    render_result(compare_and_report(experiments=[exp], plots=(what == "plots")), "table", 120)
elapsed = time.perf_counter() - t0
# VmHWM: this process's own peak. ru_maxrss would carry over the parent's peak through fork+exec
# (the parent holds the freshly written data), and read the same for every child.
peak_kb = next((int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")),
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024}))
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
        for twin in exp.glob("results/*/*/batches-*.npz"):
            twin.unlink()
        _show("compare, cold, JSON only", measure("compare", exp), ref)
        t0 = time.perf_counter()
        measure("twins", exp)  # what the agent does at the end of each run
        twins_mb = sum(p.stat().st_size for p in exp.glob("results/*/*/batches-*.npz")) / 1e6
        print(f"{'columnar twins written':<30} {(time.perf_counter() - t0) / (2 * args.seeds):.2f} s per run "
              f"(parse included; the agent has the document in memory), {twins_mb:.0f} MB in all")
        shutil.rmtree(exp / "results" / "comparison", ignore_errors=True)
        cold = measure("compare", exp)
        _show("compare_experiment, cold", cold, ref)
        formats = measure("formats", exp)["formats"]
        line = (f"{'read the arrays (10 runs)':<30} digest check of results.json {formats['digest']:.2f} s (any "
                f"format needs it); arrays: npz {formats['npz']:.2f} s ({formats['npz_mb']:.0f} MB)")
        if "feather" in formats:
            line += (f"; Arrow IPC {formats['feather']:.2f} s ({formats['feather_mb']:.0f} MB), Parquet "
                     f"{formats['parquet']:.2f} s ({formats['parquet_mb']:.0f} MB), plus `import pyarrow` "
                     f"{formats['pyarrow_import']:.2f} s once")
        else:
            line += "; pyarrow not installed: Arrow/Parquet not measured"
        print(line)
        shutil.rmtree(exp / "results" / "comparison", ignore_errors=True)
        warmed = measure("warm", exp)
        runs = 2 * args.seeds
        print(f"{'reduce as each run ends':<30} {warmed['seconds'] / runs:.2f} s per run ({warmed['seconds']:.2f} s "
              f"for {runs}; `harness run` does this when a run completes)")
        for what, label in (("compare", "compare_experiment, after run"), ("reports", "compare --no-plots"),
                            ("plots", "compare with plots")):
            _show(label, measure(what, exp), ref)
        print("targets for compare_experiment: <= 2 s, <= 500 MB. 'after run' is what `harness compare` costs "
              "after `harness run`; 'cold' is results copied in from elsewhere (with their twins); 'JSON only' "
              "is bound by the JSON parse: see the reference")


if __name__ == "__main__":
    main()
