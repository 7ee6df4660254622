"""How much does measuring cost? Prints figures; asserts nothing (targets are for a human to judge).

    python benchmarks/monitor_overhead.py [--quick]

1. ``start_batch`` + ``end_batch``: median cost per pair (target <= 2 us), next to a bare
   ``perf_counter_ns`` pair measured in the same run.
2. One full resource sample (cgroup CPU, memory, PSI; NVML when a GPU is there): median
   (target <= 100 us with one GPU), next to references measured here: one cgroup file read by
   open/read/close, and forking a trivial process (what GPUtil's nvidia-smi call costs at least).
3. The sampler thread's own CPU time per second of wall time at 10 Hz (target <= 1 ms/s).
4. A small torch CNN on CPU with and without the monitor (10 Hz sampling), interleaved and
   repeated; the difference is reported against the run-to-run noise.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from time import perf_counter_ns

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.monitor import ExperimentMonitor  # noqa: E402
from harness.monitor.sampler import ResourceSampler, SamplerThread  # noqa: E402


def per_call_ns(fn, inner: int, blocks: int) -> list[float]:
    """ns per call of ``fn`` for each of ``blocks`` blocks of ``inner`` calls."""
    out = []
    for _ in range(blocks):
        t0 = perf_counter_ns()
        for _ in range(inner):
            fn()
        out.append((perf_counter_ns() - t0) / inner)
    return out


def bench_batch_hooks(blocks: int) -> None:
    monitor = ExperimentMonitor("bench", save_dir="/tmp/harness-bench")
    monitor.start_mode("bench", resource_interval=3600)
    start, end = monitor.start_batch, monitor.end_batch

    def pair() -> None:
        start()
        end()

    def bare() -> None:
        perf_counter_ns()
        perf_counter_ns()

    for _ in range(3):  # warm up, and keep the records list from being a one-off
        per_call_ns(pair, 1000, 5)
    hooks = per_call_ns(pair, 1000, blocks)
    clock = per_call_ns(bare, 1000, blocks)
    monitor.stop_mode()
    print(f"1. start_batch + end_batch: median {statistics.median(hooks) / 1000:.2f} us per batch "
          f"(p90 {sorted(hooks)[int(0.9 * len(hooks))] / 1000:.2f} us; target <= 2 us); "
          f"a bare perf_counter_ns pair: {statistics.median(clock) / 1000:.3f} us")


def bench_sample(n: int) -> None:
    sampler = ResourceSampler()
    sampler.cgroup.psi_interval_ns = 0  # a *full* sample: PSI files too (normally read at most once a second)
    sampler.sample()
    costs = []
    for _ in range(n):
        t0 = perf_counter_ns()
        sampler.sample()
        costs.append(perf_counter_ns() - t0)
    cold = []
    for _ in range(20):  # what the 10 Hz thread pays: caches gone cold after 100 ms asleep
        time.sleep(0.1)
        t0 = perf_counter_ns()
        sampler.sample()
        cold.append(perf_counter_ns() - t0)
    gpus = len(sampler.gpu.devices) if sampler.gpu is not None else 0
    path = (sampler.cgroup.paths.memory or ["/proc"])[0] + "/memory.stat"
    if not os.path.exists(path):
        path = "/proc/self/stat"

    def read_once() -> None:
        with open(path) as f:
            f.read()

    file_read = statistics.median(per_call_ns(read_once, 200, 20))
    forks = []
    for _ in range(20):
        t0 = perf_counter_ns()
        subprocess.run(["true"])
        forks.append(perf_counter_ns() - t0)
    note = f"{gpus} GPU(s) via NVML" if gpus else f"no GPU ({sampler.gpu.reason if sampler.gpu else 'off'})"
    print(f"2. one full resource sample: median {statistics.median(costs) / 1000:.1f} us "
          f"(p90 {sorted(costs)[int(0.9 * len(costs))] / 1000:.1f} us; {note}; cgroup v{sampler.cgroup.version}; "
          f"target <= 100 us with one GPU); after 100 ms asleep (cold caches): median {statistics.median(cold) / 1000:.1f} us")
    print(f"   references measured here: one cgroup file open+read+close {file_read / 1000:.1f} us; "
          f"fork+exec of `true` {statistics.median(forks) / 1e6:.2f} ms (nvidia-smi, as GPUtil runs it, ~24 ms)")
    sampler.close()


def thread_cpu_ms_per_s(thread: threading.Thread, seconds: float) -> float:
    clock = time.pthread_getcpuclockid(thread.ident)  # CPU time of that thread alone
    cpu0, wall0 = time.clock_gettime(clock), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = time.clock_gettime(clock), time.monotonic()
    return (cpu1 - cpu0) / (wall1 - wall0) * 1000


def bench_sampler_cpu(seconds: float) -> None:
    figures = {}
    for hz in (10, 1):
        sampler = ResourceSampler()
        thread = SamplerThread(sampler, 1.0 / hz, lambda s: None)
        thread.start()
        figures[hz] = thread_cpu_ms_per_s(thread._thread, seconds)
        thread.stop(final_sample=False)
        sampler.close()
    stop = threading.Event()
    idle = threading.Thread(target=lambda: [None for _ in iter(lambda: stop.wait(0.1), True)], daemon=True)
    idle.start()
    bare = thread_cpu_ms_per_s(idle, seconds)
    stop.set()
    print(f"3. sampler thread: {figures[10]:.3f} ms CPU per second of wall time at 10 Hz (target <= 1 ms/s), "
          f"{figures[1]:.3f} ms/s at 1 Hz (the default); reference: a thread that only wakes at 10 Hz "
          f"and does nothing costs {bare:.3f} ms/s here (over {seconds:.0f} s each)")


def bench_training(reps: int, batches: int) -> None:
    import torch

    torch.set_num_threads(1)  # two shared cores here: one thread keeps the noise down
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = [(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))) for _ in range(batches)]

    def epoch(monitor: ExperimentMonitor | None) -> float:
        t0 = perf_counter_ns()
        if monitor is not None:
            monitor.start_mode("m", resource_interval=0.1)
            it = monitor.batches(data, epoch=0)
        else:
            it = iter(data)
        for i, (x, y) in enumerate(it):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if monitor is not None:
                monitor.log_loss(0, i, loss.item())
            else:
                loss.item()
        if monitor is not None:
            monitor.stop_mode()
        return (perf_counter_ns() - t0) / 1e9

    epoch(None)  # warm-up
    plain, monitored = [], []
    for rep in range(reps):
        order = (False, True) if rep % 2 == 0 else (True, False)  # interleave, alternate who goes first
        for with_monitor in order:
            if with_monitor:
                monitored.append(epoch(ExperimentMonitor("bench", save_dir="/tmp/harness-bench")))
            else:
                plain.append(epoch(None))
    diffs = [m - p for m, p in zip(monitored, plain)]
    mean_d = statistics.mean(diffs)
    sem = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
    base = statistics.median(plain)
    stands_out = abs(mean_d) > 2 * sem
    print(f"4. torch CNN on CPU, {batches} batches of 32, {reps} interleaved pairs:")
    print(f"   without monitor: median {base:.3f} s (min {min(plain):.3f}, max {max(plain):.3f}, "
          f"stdev {statistics.stdev(plain):.3f})")
    print(f"   with monitor:    median {statistics.median(monitored):.3f} s (min {min(monitored):.3f}, "
          f"max {max(monitored):.3f}, stdev {statistics.stdev(monitored):.3f})")
    print(f"   paired difference: {mean_d * 1000:+.1f} ms per epoch ({100 * mean_d / base:+.2f} %), "
          f"noise (2 x standard error) {2 * sem * 1000:.1f} ms -> "
          + ("the difference stands out of the noise" if stands_out else "no difference stands out of the noise"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    q = args.quick
    print(f"harness monitor overhead - Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_batch_hooks(blocks=50 if q else 300)
    bench_sample(n=200 if q else 2000)
    bench_sampler_cpu(seconds=2.0 if q else 10.0)
    bench_training(reps=3 if q else 10, batches=30 if q else 60)


if __name__ == "__main__":
    main()
