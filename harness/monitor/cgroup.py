"""CPU, memory and pressure of the cgroup this process is in (v1, v2 and hybrid hosts).

The cgroup is found through ``/proc/self/cgroup`` and the mount table, never an assumed
path: the path in ``/proc/self/cgroup`` is translated against the mount's root in
``/proc/self/mountinfo`` (they differ inside containers without a cgroup namespace, and
inside one the path is ``/``). Limits are the tightest along the walk up to the mount
point; ``max``, ``-1`` and values of 2^60 or more mean unlimited. Missing files (a child
cgroup without the memory controller, an old kernel without PSI) make that one figure
absent, never an error.

Every file is opened once and re-read with ``pread`` on each sample: no path lookups, no
subprocesses. ``root`` lets tests point the whole reader at a recorded tree.
"""

from __future__ import annotations

import os
import time
from typing import Any

from harness.monitor.cgroup_paths import CgroupPaths, Mount, discover, in_container, parse_mountinfo, \
    parse_proc_cgroup, translate

from harness.monitor.cgroup_files import UNLIMITED_THRESHOLD, _all, _File, _first, _min_limit, parse_cpu_max, \
    parse_cpuset, parse_int, parse_keyed, parse_psi, stat_value


class CgroupReader:
    """Reads one cgroup's CPU, memory and PSI figures; construct once, call :meth:`read` often."""

    def __init__(self, root: str = "/", paths: CgroupPaths | None = None, host_cpus: int | None = None,
                 host_memory: int | None = None) -> None:
        self.root = root
        self.paths = paths if paths is not None else discover(root)
        self.version = self.paths.version
        p = self.paths
        self.host_cpus = host_cpus or len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (host_cpus or os.cpu_count() or 1)
        self.host_memory = host_memory
        if self.version == 1:
            self._usage = _first(p.cpuacct, "cpuacct.usage")
            self._cpu_stat = _first(p.cpu, "cpu.stat")
            self._quota = _all(p.cpu, "cpu.cfs_quota_us")
            self._period = _all(p.cpu, "cpu.cfs_period_us")
            self._cpu_max: list[_File] = []
            self._cpuset = _first(p.cpuset, "cpuset.effective_cpus") or _first(p.cpuset, "cpuset.cpus")
            self._mem_usage = _first(p.memory, "memory.usage_in_bytes")
            self._mem_stat = _first(p.memory, "memory.stat")
            self._mem_limits = _all(p.memory, "memory.limit_in_bytes")
            self._mem_peak = _first(p.memory, "memory.max_usage_in_bytes")
            self._oom = _first(p.memory, "memory.oom_control")
        elif self.version == 2:
            self._usage = None
            self._cpu_stat = _first(p.cpu, "cpu.stat")
            self._quota, self._period = [], []
            self._cpu_max = _all(p.cpu, "cpu.max")
            self._cpuset = _first(p.cpuset, "cpuset.cpus.effective")
            self._mem_usage = _first(p.memory, "memory.current")
            self._mem_stat = _first(p.memory, "memory.stat")
            self._mem_limits = _all(p.memory, "memory.max")
            self._mem_peak = _first(p.memory, "memory.peak")
            self._oom = _first(p.memory, "memory.events")
        else:
            self._usage = self._cpu_stat = self._cpuset = None
            self._mem_usage = self._mem_stat = self._mem_peak = self._oom = None
            self._quota, self._period, self._cpu_max, self._mem_limits = [], [], [], []
        # PSI lives in the unified hierarchy, on hybrid hosts too.
        self._psi = {name: _first(p.unified[:1], f"{name}.pressure") for name in ("cpu", "memory", "io")}
        self._last: tuple[int, int] | None = None  # (monotonic ns, usage ns) of the previous read
        self._inactive: int | None = None  # inactive file cache at the last full read (bytes)
        self.counters_interval_ns = 10_000_000_000
        self._counters_at = 0
        # Limits change rarely (docker update); re-reading them every sample would double its cost.
        self._limits: tuple[float, str, int | None] | None = None
        self._limits_at = 0
        self.psi_interval_ns = 1_000_000_000
        self._psi_at = -self.psi_interval_ns

    # -- limits ---------------------------------------------------------------------------
    def cpu_limit(self) -> tuple[float, str]:
        """Cores this cgroup may use and where that figure comes from (quota, cpuset, host)."""
        if self.version == 1:
            quotas = []
            for q, per in zip(self._quota, self._period):
                quota = parse_int(q.read())
                period = parse_int(per.read())
                quotas.append(quota / period if quota and period else None)
            quota_cores = _min_limit(quotas)
        else:
            quota_cores = _min_limit([parse_cpu_max(f.read()) for f in self._cpu_max])
        cpuset = parse_cpuset(self._cpuset.read()) if self._cpuset else None
        if quota_cores is not None and (cpuset is None or quota_cores <= cpuset):
            return quota_cores, "quota"
        if cpuset is not None:
            return float(cpuset), "cpuset"
        return float(self.host_cpus), "host"

    def memory_limit(self) -> int | None:
        """The tightest memory limit along the walk up, ``None`` when none applies."""
        limits: list[float | None] = [parse_int(f.read()) for f in self._mem_limits]
        if self.version == 1 and self._mem_stat is not None:
            # v1 reports the effective limit of the whole ancestry here
            limits.append(stat_value(self._mem_stat.read(), "hierarchical_memory_limit"))
        limit = _min_limit(limits)
        return int(limit) if limit is not None else None

    def limits(self, now_ns: int, max_age_ns: int = 10_000_000_000) -> tuple[float, str, int | None]:
        """``(cpu cores, its source, memory bytes)``, re-read at most every ``max_age_ns``."""
        if self._limits is None or now_ns - self._limits_at > max_age_ns:
            cores, source = self.cpu_limit()
            self._limits = (cores, source, self.memory_limit())
            self._limits_at = now_ns
        return self._limits

    def oom_kills(self) -> int | None:
        """The OOM-kill counter (``memory.events`` / ``memory.oom_control`` ``oom_kill``)."""
        if self._oom is None:
            return None
        return parse_keyed(self._oom.read()).get("oom_kill")

    # -- one sample ---------------------------------------------------------------------------
    def read(self, now_ns: int | None = None, full: bool = True, counters: bool = True
             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str]]:
        """``(cpu, memory, psi, unavailable)`` as in the ``sample`` event of events.jsonl.

        ``cores`` and ``percent_of_limit`` are over the time since the previous call and
        absent on the first one; the raw counters are always there. ``full=False`` is the
        light tick of a fast sampler (:meth:`read_light`): CPU and memory usage only. memory.stat
        (the kernel walks every page counter to print it) and PSI are read on full ticks, and the
        working set of a light tick uses the inactive-file figure of the last full one (at most a
        second old; file cache moves slowly next to usage). The peak and the OOM counter (a
        high-water mark and a count: only their last value matters) are read when ``counters``
        is true, and otherwise at most every ``counters_interval_ns``.
        """
        now = now_ns if now_ns is not None else time.monotonic_ns()
        if not full:
            light = self.read_light(now)
            if light is not None:
                return light[0], light[1], {}, {}
        unavailable: dict[str, str] = {}
        if self.version is None:
            unavailable["cgroup"] = "no cgroup filesystem mounted"
            return {}, {}, {}, unavailable
        limit_cores, source, limit = self.limits(now)
        cpu = self._read_cpu(now, limit_cores, source, unavailable)
        due = full and (counters or now - self._counters_at >= self.counters_interval_ns)
        if due:
            self._counters_at = now
        mem = self._read_memory(limit, unavailable, full, due)
        return cpu, mem, self._read_psi(now, unavailable) if full else {}, unavailable

    def _read_cpu(self, now: int, limit_cores: float, source: str, unavailable: dict[str, str]) -> dict[str, Any]:
        cpu: dict[str, Any] = {}
        stat = parse_keyed(self._cpu_stat.read()) if self._cpu_stat else {}
        if self.version == 1:
            usage = parse_int(self._usage.read()) if self._usage else None
            throttled_ns = stat.get("throttled_time")
        else:
            usage = stat["usage_usec"] * 1000 if "usage_usec" in stat else None
            throttled_ns = stat["throttled_usec"] * 1000 if "throttled_usec" in stat else None
        cpu["limit_cores"] = limit_cores
        cpu["limit_source"] = source
        if usage is not None:
            cpu["usage_ns"] = usage
            if self._last is not None and now > self._last[0]:
                cores = max(0, usage - self._last[1]) / (now - self._last[0])
                cpu["cores"] = round(cores, 4)
                cpu["percent_of_limit"] = round(100.0 * cores / limit_cores, 2) if limit_cores else None
            self._last = (now, usage)
        else:
            unavailable["cpu.usage"] = "no cpuacct.usage / cpu.stat usage_usec in this cgroup"
        for key in ("nr_periods", "nr_throttled"):
            if key in stat:
                cpu[key] = stat[key]
        if throttled_ns is not None:
            cpu["throttled_ns"] = throttled_ns
        return cpu

    def _read_memory(self, limit: int | None, unavailable: dict[str, str], full: bool = True,
                     counters: bool = True) -> dict[str, Any]:
        mem: dict[str, Any] = {}
        usage_b = parse_int(self._mem_usage.read()) if self._mem_usage else None
        if usage_b is None:
            unavailable["memory"] = "no memory controller files in this cgroup"
            return mem
        if full or self._inactive is None:
            mstat = self._mem_stat.read() if self._mem_stat else None
            # kubelet's working set: usage minus inactive file cache (v1 uses the total_ hierarchy key)
            inactive = stat_value(mstat, "total_inactive_file")
            if inactive is None:
                inactive = stat_value(mstat, "inactive_file") or 0
            self._inactive = inactive
        working = max(0, usage_b - self._inactive)
        mem["usage"] = usage_b
        mem["working_set"] = working
        mem["limit"] = limit
        denominator = limit if limit is not None else self.host_memory
        mem["percent_of_limit"] = round(100.0 * working / denominator, 2) if denominator else None
        if counters:
            peak = parse_int(self._mem_peak.read()) if self._mem_peak else None
            if peak is not None:
                mem["peak"] = peak
            oom = self.oom_kills()
            if oom is not None:
                mem["oom_kill"] = oom
        return mem

    def _read_psi(self, now: int, unavailable: dict[str, str]) -> dict[str, Any]:
        # PSI's averages are already over 10 s or more: reading it at most once a second loses
        # nothing and keeps a 10 Hz sampler cheap. Samples in between carry no psi part.
        psi: dict[str, Any] = {}
        if now - self._psi_at >= self.psi_interval_ns:
            self._psi_at = now
            for name, f in self._psi.items():
                parsed = parse_psi(f.read()) if f is not None else None
                if parsed is not None:
                    psi[name] = parsed
            if not psi:
                unavailable["psi"] = "kernel or cgroup without pressure (PSI) files"
        return psi

    @property
    def _light_ready(self) -> bool:
        """A light tick needs what a full read found: the files, the limits and a usage baseline."""
        return (self._last is not None and self._limits is not None and self._inactive is not None
                and self._mem_usage is not None and self._mem_usage.fd is not None
                and self._cpu_stat is not None and self._cpu_stat.fd is not None
                and (self.version == 2 or (self._usage is not None and self._usage.fd is not None)))

    def read_light(self, now: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """CPU and memory usage only, in as few steps as a 10 Hz thread can afford (see :meth:`read`).

        ``None`` until a full read has found the files, the limits and a usage baseline, or when a
        file stops answering (the caller then does a full read, which says why).
        """
        if not self._light_ready:
            return None
        try:
            words = os.pread(self._cpu_stat.fd, 1024, 0).split()  # type: ignore[union-attr, arg-type]
            stat = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
            if self.version == 1:
                usage = int(os.pread(self._usage.fd, 64, 0))  # type: ignore[union-attr, arg-type]
                throttled_ns = stat.get(b"throttled_time")
            else:
                usage = stat[b"usage_usec"] * 1000
                throttled_ns = stat[b"throttled_usec"] * 1000 if b"throttled_usec" in stat else None
            usage_b = int(os.pread(self._mem_usage.fd, 64, 0))  # type: ignore[union-attr, arg-type]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        limit_cores, source, limit = self._limits  # type: ignore[misc]
        last_at, last_usage = self._last  # type: ignore[misc]
        self._last = (now, usage)
        cores = max(0, usage - last_usage) / (now - last_at) if now > last_at else 0.0
        cpu = {"limit_cores": limit_cores, "limit_source": source, "usage_ns": usage, "cores": round(cores, 4),
               "percent_of_limit": round(100.0 * cores / limit_cores, 2) if limit_cores else None}
        if b"nr_periods" in stat:
            cpu["nr_periods"], cpu["nr_throttled"] = stat[b"nr_periods"], stat.get(b"nr_throttled", 0)
        if throttled_ns is not None:
            cpu["throttled_ns"] = throttled_ns
        working = max(0, usage_b - self._inactive)  # type: ignore[operator]
        denominator = limit if limit is not None else self.host_memory
        mem = {"usage": usage_b, "working_set": working, "limit": limit,
               "percent_of_limit": round(100.0 * working / denominator, 2) if denominator else None}
        return cpu, mem

    def describe(self) -> dict[str, Any]:
        """Version and limits for the environment manifest."""
        if self.version is None:
            return {"version": None, "cpu_limit_cores": float(self.host_cpus), "memory_limit_bytes": None}
        cores, source = self.cpu_limit()
        return {"version": self.version, "hybrid": self.paths.hybrid, "container": in_container(self.root),
                "cpu_limit_cores": cores,
                "cpu_limit_source": source, "memory_limit_bytes": self.memory_limit(),
                "path": (self.paths.memory or self.paths.cpu or [""])[0]}

    def close(self) -> None:
        for f in [self._usage, self._cpu_stat, self._cpuset, self._mem_usage, self._mem_stat, self._mem_peak,
                  self._oom, *self._quota, *self._period, *self._cpu_max, *self._mem_limits,
                  *self._psi.values()]:
            if f is not None:
                f.close()


# Discovery lives in cgroup_paths; its names stay importable from here.
__all__ = [
    "CgroupPaths", "CgroupReader", "Mount", "UNLIMITED_THRESHOLD", "discover", "in_container", "parse_cpu_max",
    "parse_cpuset", "parse_int", "parse_keyed", "parse_mountinfo", "parse_proc_cgroup", "parse_psi",
    "stat_value", "translate"]
