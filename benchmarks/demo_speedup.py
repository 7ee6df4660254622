"""How much faster is the generated optimization mode than the baseline, on this machine?

Scaffolds a fresh experiment in a temporary folder, runs `python baseline.py` and
`python optimization.py` alternately (no containers: this measures the pipeline
change, not harness), and prints the mean time per batch *including the wait for
data* of each mode and their ratio, from the results files the monitor wrote.

    python benchmarks/demo_speedup.py [--framework pytorch] [--repeats 2] [--clips N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(path: Path, script: str, results: Path) -> dict:
    env = {**os.environ, "HARNESS_CONFIG": str(path / "experiment_config.json"), "HARNESS_RESULTS_DIR": str(results)}
    start = time.perf_counter()
    subprocess.run([sys.executable, script], cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (data,) = [json.loads(p.read_text()) for p in results.glob("*_results.json")]
    mode = next(iter(data["modes"].values()))
    dts = dict((i, dt) for i, dt in mode["batch_times"])
    waits = dict((i, w) for i, w in mode.get("data_wait_times", []))
    per_batch = [dt + (waits.get(i) or 0.0) for i, dt in dts.items()]
    return {"per_batch": statistics.mean(per_batch), "compute": statistics.mean(dts.values()),
            "wait": statistics.mean([waits.get(i) or 0.0 for i in dts]), "wall": wall, "batches": len(per_batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternating")
    parser.add_argument("--clips", type=int, help="parameters.num_clips (default: the generated config's)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the generated config's)")
    args = parser.parse_args()

    from harness.scaffold import create_experiment

    with tempfile.TemporaryDirectory(prefix="harness-speedup-") as tmp:
        path = create_experiment("speedup", args.framework, root=Path(tmp))
        cfg_path = path / "experiment_config.json"
        cfg = json.loads(cfg_path.read_text())
        if args.clips:
            cfg["parameters"]["num_clips"] = args.clips
        if args.epochs:
            cfg["epochs"] = args.epochs
        cfg_path.write_text(json.dumps(cfg))
        print(f"{args.framework}: {cfg['parameters']['num_clips']} clips, {cfg['epochs']} epochs, "
              f"batch {cfg['batch_size']}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        rows: dict[str, list[dict]] = {"baseline": [], "optimization": []}
        for r in range(args.repeats):
            for mode in rows:
                res = run(path, f"{mode}.py", Path(tmp) / f"{mode}-{r}")
                rows[mode].append(res)
                print(f"  {mode:<12} run {r}: {res['per_batch'] * 1000:7.1f} ms/batch "
                      f"(compute {res['compute'] * 1000:6.1f} + data wait {res['wait'] * 1000:6.1f}), "
                      f"{res['batches']} batches, wall {res['wall']:.1f} s")
        mean = {m: statistics.mean(x["per_batch"] for x in v) for m, v in rows.items()}
        wall = {m: statistics.mean(x["wall"] for x in v) for m, v in rows.items()}
        print(f"mean batch time incl. data wait: baseline {mean['baseline'] * 1000:.1f} ms, "
              f"optimization {mean['optimization'] * 1000:.1f} ms")
        print(f"speedup (baseline / optimization): batch time {mean['baseline'] / mean['optimization']:.2f}x, "
              f"wall time {wall['baseline'] / wall['optimization']:.2f}x")


if __name__ == "__main__":
    main()
