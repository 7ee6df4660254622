"""CPU and memory of one process tree (psutil), for local runs that cannot have a cgroup of their own.

The cgroup a local process sits in is usually the machine's (or a user slice shared with
everything else), so its figures describe the machine. Summing the CPU time and resident
memory of the run's own processes, children included, describes the run. Processes that
ended between two samples take their last CPU time with them; :class:`ProcessTreeReader`
keeps it so that ``usage_ns`` never goes backwards. Same record shape as
:class:`harness.monitor.cgroup.CgroupReader.read`, without throttling, PSI or OOM counters.
"""

from __future__ import annotations

import os
from typing import Any


# Whose CPU and memory a run's samples describe (results record it; compare warns when modes differ).
CONTAINER_CGROUP = "container cgroup"
OWN_CGROUP = "own cgroup"
PROCESS_TREE = "process tree"
CPU_SOURCES = (CONTAINER_CGROUP, OWN_CGROUP, PROCESS_TREE)


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the limit of a process-tree run."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ProcessTreeReader:
    """Reads the CPU time and RSS of ``pid`` and its descendants; construct once, call :meth:`read` often."""

    version = None  # no cgroup: the agent's OOM check reads oom_kills() as None
    source = PROCESS_TREE

    def __init__(self, pid: int | None = None, host_memory: int | None = None) -> None:
        import psutil

        self._root = psutil.Process(pid if pid is not None else os.getpid())
        self.host_memory = host_memory
        self.host_cpus = affinity_cpus()
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process, kept so cpu_times of the same process is cheap
        self._last_times: dict[int, float] = {}  # pid -> its last CPU seconds
        self._gone_s = 0.0  # CPU seconds of processes that have ended
        self._last: tuple[int, int] | None = None

    def _tree(self) -> list[Any]:
        import psutil

        try:
            found = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            found = [self._root]
        procs = []
        for p in found:
            known = self._procs.get(p.pid)
            if known is not None and known.create_time() == p.create_time():
                procs.append(known)
            else:
                self._procs[p.pid] = p
                procs.append(p)
        return procs

    def totals(self) -> tuple[float, int]:
        """``(CPU seconds, resident bytes)`` of the tree; ended processes keep their last CPU time."""
        import psutil

        cpu_s, rss, seen = 0.0, 0, set()
        for p in self._tree():
            try:
                with p.oneshot():
                    times = p.cpu_times()
                    used = times.user + times.system
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
            self._last_times[p.pid] = used
            seen.add(p.pid)
            cpu_s += used
        for pid in [pid for pid in self._last_times if pid not in seen]:
            self._gone_s += self._last_times.pop(pid)
            self._procs.pop(pid, None)
        return cpu_s + self._gone_s, rss

    def cpu_limit(self) -> tuple[float, str]:
        cpus = affinity_cpus()
        return float(cpus), "affinity" if cpus < (os.cpu_count() or cpus) else "host"

    def memory_limit(self) -> int | None:
        return None

    def oom_kills(self) -> int | None:
        return None

    def read_light(self, now_ns: int) -> None:
        """No light read: every sample walks the tree (the sampler then takes the full path)."""
        return None

    def read(self, now_ns: int, full: bool = True, counters: bool = True
             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str]]:
        """``(cpu, memory, psi, unavailable)`` like the cgroup reader's, from the process tree."""
        cpu_s, rss = self.totals()
        usage = int(cpu_s * 1e9)
        limit, source = self.cpu_limit()
        cpu: dict[str, Any] = {"usage_ns": usage, "limit_cores": limit, "limit_source": source}
        if self._last is not None and now_ns > self._last[0]:
            cores = max(0, usage - self._last[1]) / (now_ns - self._last[0])
            cpu["cores"] = round(cores, 4)
            cpu["percent_of_limit"] = round(100.0 * cores / limit, 2)
        self._last = (now_ns, usage)
        total = self.host_memory
        mem = {"usage": rss, "working_set": rss, "limit": None,
               "percent_of_limit": round(100.0 * rss / total, 2) if total else None}
        unavailable = {"psi": "process-tree source: no pressure (PSI) figures",
                       "cpu.throttling": "process-tree source: no CPU quota to be throttled by"}
        return cpu, mem, {}, unavailable

    def describe(self) -> dict[str, Any]:
        cores, source = self.cpu_limit()
        return {"version": None, "source": self.source, "cpu_limit_cores": cores, "cpu_limit_source": source,
                "memory_limit_bytes": None}

    def close(self) -> None:
        self._procs.clear()
