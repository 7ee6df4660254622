"""What does `harness run` add to a container run? (target: under 1 s)

Times, interleaved and repeated, in one process:
  harness   `harness run noop --backend docker` of a mode that does nothing (the whole CLI: plan,
            image check, container create/start/log stream/wait/remove, the agent and its results.json)
  bare      `docker run --rm IMAGE true` of the same experiment image
  bare-py   `docker run --rm IMAGE python3 noop.py`: the same, with Python starting the empty script
and prints medians, the ratio harness/bare and the difference harness - bare.

Needs the engine and the PyTorch framework image (`harness build --framework pytorch ...`).
Usage: python benchmarks/run_overhead.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from harness.config import ExperimentConfig, config_to_json
    from harness.experiment import load_experiment
    from harness.images import docker_client, ensure_experiment_image

    docker = shutil.which("docker")
    if docker is None:
        sys.exit("the docker CLI is needed for the bare reference")
    with tempfile.TemporaryDirectory(prefix="harness-overhead-") as tmp:
        exp_dir = Path(tmp) / "exp"
        exp_dir.mkdir()
        cfg = ExperimentConfig(competition="overhead", kaggle_slug="overhead", framework="pytorch", seeds=[0],
                               modes={"noop": "noop.py"})
        (exp_dir / "experiment_config.json").write_text(config_to_json(cfg))
        (exp_dir / "noop.py").write_text("pass\n")
        image = ensure_experiment_image(load_experiment(exp_dir), echo=lambda _: None)
        commands = {
            "harness": [sys.executable, "-m", "harness.cli", "run", "noop", "--backend", "docker", "-e", str(exp_dir)],
            "bare": [docker, "run", "--rm", "--network", "none", image, "true"],
            "bare-py": [docker, "run", "--rm", "--network", "none", image, "python3", "noop.py"],
        }
        for cmd in commands.values():  # warm-up: page cache, image layers, Python bytecode
            timed(cmd)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                times[name].append(timed(cmd))
        runs = len(list((exp_dir / "results" / "noop").iterdir()))
        docker_client().images.remove(image, force=True)  # leave no benchmark image behind
        if runs != args.repeat + 1:
            sys.exit(f"expected {args.repeat + 1} run folders, found {runs}")

    print(f"image {image}, {args.repeat} interleaved repeats, median [min-max] seconds")
    for name, values in times.items():
        print(f"  {name:8s} {statistics.median(values):6.3f} [{min(values):.3f}-{max(values):.3f}]")
    h, b, bp = (statistics.median(times[n]) for n in ("harness", "bare", "bare-py"))
    print(f"harness / bare    = {h / b:.2f}x   harness - bare    = {h - b:+.3f} s (target < 1 s added)")
    print(f"harness / bare-py = {h / bp:.2f}x   harness - bare-py = {h - bp:+.3f} s")


if __name__ == "__main__":
    main()
