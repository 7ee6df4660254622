"""One resource sample (cgroup CPU/memory/PSI + NVML GPUs), and a thread that takes them.

A sample keeps raw counters with monotonic (``m``) and wall (``t``) timestamps;
aggregates are computed afterwards (harness.results.build). Costs: a handful of ``pread`` calls on
files opened once, plus one NVML call per GPU metric; no subprocess, no path lookup.
A fast sampler (10 Hz) reads only what moves at that rate on every tick (cgroup CPU and
memory usage, GPU utilisation); memory.stat, peak/OOM counters, PSI and NVML power, clocks,
temperature and process list are read on a *full* tick, at most once a second.
Where no cgroup filesystem exists (macOS, some sandboxes) psutil measures our process
tree instead, which is the only place psutil is used.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from harness.monitor.cgroup import CgroupReader
from harness.monitor.process_tree import CONTAINER_CGROUP, PROCESS_TREE, ProcessTreeReader
from harness.monitor.gpu import GpuProbe, shared_probe
from harness.monitor.stopsignal import StopSignal

FULL_INTERVAL_NS = 1_000_000_000


def host_memory_bytes() -> int | None:
    """MemTotal from ``/proc/meminfo`` (the denominator when no memory limit applies)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class ResourceSampler:
    """Takes samples on demand; construct once (opens files; NVML through the process-wide probe)."""

    def __init__(self, root: str = "/", gpu: GpuProbe | None = None, gpus: bool = True,
                 track_pids: Callable[[], set[int]] | None = None, source: str | None = None) -> None:
        # source: whose CPU and memory (process_tree.CPU_SOURCES): the cgroup we are in (a
        # container's, or a local run's own), or our process tree (a local run without one).
        self.cgroup: CgroupReader | ProcessTreeReader = CgroupReader(root=root, host_memory=host_memory_bytes())
        self.source = source or CONTAINER_CGROUP
        self._no_cgroup = self.cgroup.version is None  # no cgroup file system (macOS, some sandboxes)
        if source == PROCESS_TREE or self._no_cgroup:
            self.cgroup.close()
            self.cgroup = ProcessTreeReader(host_memory=host_memory_bytes())
            self.source = PROCESS_TREE
        self.gpu = gpu if gpu is not None else (shared_probe() if gpus else None)
        self._track_pids = track_pids or (lambda: {os.getpid()})
        self.full_interval_ns = FULL_INTERVAL_NS  # 0: every sample is full
        self._full_at: int | None = None

    def sample(self, full: bool | None = None) -> dict[str, Any]:
        """One ``sample`` record (without ``type``), see docs/architecture.md.

        ``full``: read everything (True), only the fast-moving figures (False), or decide by
        the once-a-second cadence (None, what the sampler thread does).
        """
        m_ns = time.monotonic_ns()
        record: dict[str, Any] = {"t": time.time(), "m": m_ns / 1e9}
        forced = full is True  # first, final and on-demand samples: everything, peak and OOM count too
        if full is None:
            full = self._full_at is None or m_ns - self._full_at >= self.full_interval_ns
        if not full:
            light = self.cgroup.read_light(m_ns)
            if light is not None:  # the common tick, kept short: a 10 Hz thread pays it cold
                record["cpu"], record["memory"] = light
                if self.gpu is not None and self.gpu.available:
                    record["gpus"] = self.gpu.read(None, full=False)[0]
                return record
        if full:
            self._full_at = m_ns
        cpu, mem, psi, unavailable = self.cgroup.read(m_ns, full=full, counters=forced)
        if self._no_cgroup:
            unavailable["cgroup"] = "no cgroup filesystem; psutil measured this process tree"
        if cpu:
            record["cpu"] = cpu
        if mem:
            record["memory"] = mem
        if psi:
            record["psi"] = psi
        if self.gpu is not None and not full and not self.gpu.available:
            pass  # why there is no GPU part is said on full ticks; a light one does not repeat it
        elif self.gpu is not None:
            pids = self._track_pids() if full and self.gpu.available else None
            gpus, gpu_unavailable = self.gpu.read(pids, full=full)
            if gpus:
                record["gpus"] = gpus
                record["gpu_memory_attribution"] = self.gpu.attribution
            unavailable.update(gpu_unavailable)
        else:
            unavailable["gpu"] = "GPU sampling turned off"
        if unavailable:
            record["unavailable"] = unavailable
        return record

    def describe(self) -> dict[str, Any]:
        return {**self.cgroup.describe(), "cpu_source": self.source}

    def close(self) -> None:
        self.cgroup.close()
        if self.gpu is not None:
            self.gpu.close()


class SamplerThread:
    """Calls ``sink(sample)`` every ``interval`` seconds on a daemon thread (off the training thread).

    ``sampler`` may be a factory: it is then called on the thread, so opening the cgroup files
    and NVML's first use cost the caller nothing. The first sample is taken at once by the
    thread; :meth:`stop` only signals, and the thread takes the final sample as it leaves
    (:meth:`join` waits for it, e.g. before reading what the sink collected).
    """

    def __init__(self, sampler: ResourceSampler | Callable[[], ResourceSampler], interval: float,
                 sink: Callable[[dict[str, Any]], None], close_sampler: bool = False,
                 stop: StopSignal | None = None) -> None:
        self.sampler: ResourceSampler | None = sampler if isinstance(sampler, ResourceSampler) else None
        self._factory = None if self.sampler is not None else sampler
        self.interval = max(0.01, float(interval))
        self.sink = sink
        self.error: str | None = None
        self._close_sampler = close_sampler
        self._final = True
        self._stop = stop if stop is not None else StopSignal()
        self._thread = threading.Thread(target=self.run, name="harness-sampler", daemon=True)

    def start(self) -> "SamplerThread":
        self._thread.start()
        return self

    def _take(self, full: bool | None = None) -> None:
        try:
            self.sink(self.sampler.sample(full))  # type: ignore[union-attr]
        except Exception:  # a sampling failure must never take the training run down
            pass

    def run(self) -> None:
        """The thread's body (also callable on a thread the caller made): sample until stopped."""
        if self.sampler is None:
            try:
                self.sampler = self._factory()  # type: ignore[misc]
            except Exception as e:  # no sampler: the run goes on unmeasured, and says why
                self.error = f"sampler failed to start: {e}"
                return
        self._take(True)  # a first sample at once, so short runs have a baseline for CPU deltas
        self._loop()
        if self._final:
            self._take(True)  # the last word on peak memory and OOM kills
        if self._close_sampler:
            self.sampler.close()

    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self._take()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # we were descheduled for long: skip, don't burst
                next_at = now + self.interval

    def stop(self, final_sample: bool = True, wait: bool = True) -> None:
        """Stop sampling; the thread takes the final sample. ``wait=False`` returns at once."""
        self._final = final_sample
        self._stop.set()
        if wait:
            self.join()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
