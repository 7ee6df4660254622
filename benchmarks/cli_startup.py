"""How long `harness --help` takes to start, beside a bare `python -c pass`.

Heavy modules (torch, tensorflow, matplotlib, docker, ray) must not be imported by
`--help`; this prints both times (median of interleaved runs), their ratio and the
difference, and which heavy modules `--help` pulled in (none is the target).

    python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "tensorflow", "matplotlib", "docker", "ray", "scipy", "pydantic")


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    bare = [sys.executable, "-c", "pass"]
    help_cmd = [sys.executable, "-m", "harness", "--help"]
    _time(bare), _time(help_cmd)  # warm the page cache
    bare_t, help_t = [], []
    for _ in range(args.runs):
        bare_t.append(_time(bare))
        help_t.append(_time(help_cmd))
    b, h = statistics.median(bare_t), statistics.median(help_t)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom harness.cli import main\nsys.argv=['harness','--help']\n"
         "try: main()\nexcept SystemExit: pass\n"
         f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    heavy = probe.stdout.rsplit("HEAVY:", 1)[-1].strip()
    print(f"python -c pass   : {b * 1000:7.1f} ms (median of {args.runs})")
    print(f"harness --help   : {h * 1000:7.1f} ms (median of {args.runs})")
    print(f"ratio            : {h / b:7.2f}x   difference: {(h - b) * 1000:.1f} ms")
    print(f"heavy imports    : {heavy or 'none'}")


if __name__ == "__main__":
    main()
