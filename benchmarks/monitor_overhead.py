"""How much does measuring cost? Prints figures; asserts nothing (targets are for a human to judge).

    python benchmarks/monitor_overhead.py [--quick]

1. ``start_batch`` + ``end_batch``: median cost per pair (target <= 2 us), next to a bare
   ``perf_counter_ns`` pair measured in the same run.
2. One full resource sample (cgroup CPU, memory, PSI; NVML when a GPU is there): median
   (target <= 100 us with one GPU), and a light tick, next to references measured here: one
   cgroup file read by open/read/close, and forking a trivial process (what GPUtil's
   nvidia-smi call costs at least).
3. The sampler thread's own CPU time per second of wall time at 10 Hz, as a ratio to an idle
   thread waking at 10 Hz (target <= 2 x), interleaved rounds.
4. A small torch CNN on CPU with and without the monitor (10 Hz sampling), interleaved and
   repeated; the difference is reported against the run-to-run noise.
5. ``start_mode`` + ``stop_mode`` with sampling on (target <= 5 ms): the first in the process
   and the median of the later ones.
6. Automatic step timing (harness.autoinstrument, for scripts that do not use the monitor): what
   its optimizer hook costs per step beyond a do-nothing hook registered the same way (target
   <= 2 us), what its DataLoader ``__next__`` wrapper adds per batch, and what the bootstrap adds
   to the start-up of a Python process that imports no framework.
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


def _median_us(values: list[float]) -> float:
    return statistics.median(values) / 1000


def _costs(sampler: ResourceSampler, full: bool, n: int, asleep: float = 0.0) -> list[float]:
    out = []
    for _ in range(n):
        if asleep:
            time.sleep(asleep)
        t0 = perf_counter_ns()
        sampler.sample(full)
        out.append(perf_counter_ns() - t0)
    return out


def bench_sample(n: int) -> None:
    sampler = ResourceSampler()
    sampler.sample(True)
    full, light = _costs(sampler, True, n), _costs(sampler, False, n)
    # what the 10 Hz thread pays: caches gone cold after 100 ms asleep
    cold_full, cold_light = _costs(sampler, True, 20, 0.1), _costs(sampler, False, 20, 0.1)
    gpus = len(sampler.gpu.devices) if sampler.gpu is not None else 0
    path = (sampler.cgroup.paths.memory or ["/proc"])[0] + "/memory.stat"
    if not os.path.exists(path):
        path = "/proc/self/stat"

    def read_once() -> None:
        with open(path) as f:
            f.read()

    file_read = statistics.median(per_call_ns(read_once, 200, 20)) / 1000
    forks = []
    for _ in range(20):
        t0 = perf_counter_ns()
        subprocess.run(["true"])
        forks.append(perf_counter_ns() - t0)
    note = f"{gpus} GPU(s) via NVML" if gpus else f"no GPU ({sampler.gpu.reason if sampler.gpu else 'off'})"
    warm = _median_us(full)
    print(f"2. one full resource sample (cgroup CPU, memory, memory.stat, peak, OOM, PSI; NVML): warm median "
          f"{warm:.1f} us (p90 {sorted(full)[int(0.9 * len(full))] / 1000:.1f} us; {note}; cgroup "
          f"v{sampler.cgroup.version}) = {warm / 100:.2f} x the 100 us target; after 100 ms asleep "
          f"{_median_us(cold_full):.1f} us")
    print(f"   a light tick (cgroup CPU + memory usage, GPU utilisation; 9 of 10 ticks at 10 Hz): warm "
          f"{_median_us(light):.1f} us, after 100 ms asleep {_median_us(cold_light):.1f} us")
    print(f"   references measured here: one cgroup file open+read+close {file_read:.1f} us (full sample = "
          f"{warm / file_read:.2f} x that); fork+exec of `true` {statistics.median(forks) / 1e6:.2f} ms "
          f"(nvidia-smi, as GPUtil runs it, ~24 ms)")
    sampler.close()


def thread_cpu_ms_per_s(thread: threading.Thread, seconds: float) -> float:
    clock = time.pthread_getcpuclockid(thread.ident)  # CPU time of that thread alone
    cpu0, wall0 = time.clock_gettime(clock), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = time.clock_gettime(clock), time.monotonic()
    return (cpu1 - cpu0) / (wall1 - wall0) * 1000


def _sampler_once(hz: float, seconds: float) -> float:
    samples: list[dict] = []
    thread = SamplerThread(ResourceSampler(), 1.0 / hz, samples.append, close_sampler=True)  # sink as in a run
    thread.start()
    time.sleep(0.3)  # past the first (full) sample and its one-off costs
    cpu = thread_cpu_ms_per_s(thread._thread, seconds)
    thread.stop(final_sample=False)
    return cpu


def _idle_once(seconds: float) -> float:
    stop = threading.Event()
    idle = threading.Thread(target=lambda: [None for _ in iter(lambda: stop.wait(0.1), True)], daemon=True)
    idle.start()
    cpu = thread_cpu_ms_per_s(idle, seconds)
    stop.set()
    idle.join()
    return cpu


def bench_sampler_cpu(seconds: float, rounds: int) -> None:
    sampler10, idle, sampler1 = [], [], []
    for _ in range(rounds):  # interleaved, so a slow spell of the machine hits both alike
        sampler10.append(_sampler_once(10, seconds))
        idle.append(_idle_once(seconds))
    sampler1.append(_sampler_once(1, seconds))
    s10, bare = statistics.median(sampler10), statistics.median(idle)
    print(f"3. sampler thread at 10 Hz: {s10:.3f} ms CPU per second of wall time; an idle thread waking at 10 Hz: "
          f"{bare:.3f} ms/s -> ratio {s10 / bare:.2f} x (target <= 2 x); medians of {rounds} interleaved "
          f"rounds of {seconds:.0f} s; at 1 Hz (the default) {sampler1[0]:.3f} ms/s")


def bench_mode_start(pairs: int) -> None:
    monitor = ExperimentMonitor("bench", save_dir="/tmp/harness-bench")
    costs = []
    for i in range(pairs + 1):
        t0 = perf_counter_ns()
        monitor.start_mode(f"m{i}", resource_interval=0.1)
        monitor.stop_mode()
        costs.append(perf_counter_ns() - t0)
        time.sleep(0.15)  # let the previous mode's thread finish its final sample, as between epochs
    first, rest = costs[0] / 1e6, sorted(c / 1e6 for c in costs[1:])
    med = statistics.median(rest)
    print(f"5. start_mode + stop_mode (10 Hz sampling, sampler started and stopped): first in the process "
          f"{first:.2f} ms, then median {med:.3f} ms, p90 {rest[int(0.9 * len(rest))]:.3f} ms over {pairs} "
          f"-> {first / 5:.2f} x / {med / 5:.3f} x the 5 ms target")


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


def bench_auto_instrument(blocks: int) -> None:
    import tempfile

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from harness.autoinstrument import child_env, torch_hooks
    from harness.autoinstrument.recorder import AutoRecorder

    tmp = tempfile.mkdtemp(prefix="harness-bench-")
    recorder = AutoRecorder(os.path.join(tmp, "events.jsonl"), register_exit=False)
    param = torch.nn.Parameter(torch.zeros(1))
    param.grad = torch.zeros(1)
    opt = torch.optim.SGD([param], lr=0.0)

    def noop_hook(optimizer, args, kwargs) -> None:
        return None

    def stepped(hook_on: bool) -> list[float]:
        if hook_on:
            installed = torch_hooks.install(torch, recorder)
        else:
            handle = register_optimizer_step_post_hook(noop_hook)
        try:
            return per_call_ns(opt.step, 500, 1)
        finally:
            if hook_on:
                installed.remove()
                recorder.steps.clear()
            else:
                handle.remove()

    for _ in range(3):
        stepped(True), stepped(False)
    with_hook, with_noop = [], []
    for i in range(blocks):  # interleaved blocks, alternating which goes first: the machine's speed drifts
        for hook_on in ((True, False) if i % 2 else (False, True)):
            (with_hook if hook_on else with_noop).extend(stepped(hook_on))
    diffs = sorted(a - b for a, b in zip(with_hook, with_noop))

    # the hook's own work, without torch's optimizer around it
    installed = torch_hooks.install(torch, recorder)
    direct = per_call_ns(lambda: torch_hooks._post_step_hook(opt, (), {}), 1000, blocks)
    installed.remove()
    recorder.steps.clear()
    bare_call = per_call_ns(lambda: noop_hook(opt, (), {}), 1000, blocks)

    # the __next__ wrapper's own work: wrap a trivial __next__ and call both directly
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    real_next = _BaseDataLoaderIter.__next__
    batch = (torch.zeros(32, 3), torch.zeros(32))

    def trivial_next(self: object) -> object:
        return batch

    _BaseDataLoaderIter.__next__ = trivial_next
    installed = torch_hooks.install(torch, recorder)
    wrapper = _BaseDataLoaderIter.__next__
    installed.remove()
    _BaseDataLoaderIter.__next__ = real_next
    fake_iter = object()
    wrapped_direct = per_call_ns(lambda: wrapper(fake_iter), 1000, blocks)
    trivial_direct = per_call_ns(lambda: trivial_next(fake_iter), 1000, blocks)

    loader = torch.utils.data.DataLoader(range(200), batch_size=None)

    def fetch_all() -> None:
        for _ in loader:
            pass

    plain, wrapped = [], []
    for _ in range(max(blocks // 5, 5)):
        plain += [x / 200 for x in per_call_ns(fetch_all, 1, 3)]
        installed = torch_hooks.install(torch, recorder)
        wrapped += [x / 200 for x in per_call_ns(fetch_all, 1, 3)]
        installed.remove()
    recorder.writer.close()

    env = dict(os.environ, HARNESS_EVENTS_FILE=os.path.join(tmp, "startup.jsonl"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                    env.get("PYTHONPATH", "")] if p)
    starts: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(10):
        for boot in (False, True):
            t0 = perf_counter_ns()
            subprocess.run([sys.executable, "-c", "pass"], env=child_env(env) if boot else env, check=True)
            starts[boot].append((perf_counter_ns() - t0) / 1e6)
    med = statistics.median
    print(f"6. automatic step timing: the optimizer hook called directly: {med(direct) / 1000:.2f} us per step, "
          f"a do-nothing Python call {med(bare_call) / 1000:.2f} us (target: <= 2 us beyond the hook)")
    print(f"   optimizer step with our hook vs a do-nothing hook: "
          f"{med(diffs) / 1000:+.2f} us per step (middle half of {len(diffs)} paired blocks: "
          f"{diffs[len(diffs) // 4] / 1000:+.2f} to {diffs[3 * len(diffs) // 4] / 1000:+.2f} us; "
          f"target <= 2 us; step with the do-nothing hook "
          f"{med(with_noop) / 1000:.2f} us)")
    print(f"   DataLoader __next__ wrapper called directly around a trivial __next__: "
          f"{(med(wrapped_direct) - med(trivial_direct)) / 1000:+.2f} us per batch (batch size read "
          f"from a tensor pair); in a real DataLoader loop: {(med(wrapped) - med(plain)) / 1000:+.2f} us "
          f"per batch (a plain DataLoader over range(): {med(plain) / 1000:.2f} us per batch)")
    print(f"   start-up of `python -c pass`: {med(starts[True]) - med(starts[False]):+.1f} ms with the "
          f"bootstrap ({med(starts[False]):.1f} ms without)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    q = args.quick
    print(f"harness monitor overhead - Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_batch_hooks(blocks=50 if q else 300)
    bench_sample(n=200 if q else 2000)
    bench_sampler_cpu(seconds=2.0 if q else 5.0, rounds=2 if q else 5)
    bench_training(reps=3 if q else 10, batches=30 if q else 60)
    bench_mode_start(pairs=10 if q else 40)
    bench_auto_instrument(blocks=40 if q else 200)


if __name__ == "__main__":
    main()
