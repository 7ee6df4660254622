"""Did something else compete for the CPU during a run? The host's view, read by the agent.

pyperf's ``system show`` is the model for what a benchmark tool should notice about its machine.
A container sees the host here: ``/proc/loadavg``, ``/proc/stat`` and ``/proc/pressure/cpu``
are not namespaced (without lxcfs). The agent records, per run (``run.host_load``):

* ``loadavg``: the host's 1-minute load average, sampled at each resource sample (it lags by
  about a minute and counts the run itself; shown because people know it);
* ``other_cores``: host CPU time used by everything *but* this run, in cores: the busy ticks of
  ``/proc/stat`` over the run less the run's own CPU time (``getrusage`` of the agent and its
  reaped children, which covers every process of the script that ended before it). Not lagged,
  and the run's own load does not count;
* ``steal_fraction``: CPU time the hypervisor gave to other guests (``/proc/stat`` steal);
* ``psi_cpu_some``: the share of the run's time in which some task on the host waited for a
  CPU (host-level PSI ``some`` line, where the kernel has PSI).

The container's own throttling is in ``summary.cpu.throttled_fraction`` (the cgroup sampler).
Only the standard library: this runs inside the container.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass(frozen=True)
class CpuTicks:
    """The aggregate ``cpu`` line of /proc/stat, in seconds."""

    busy: float  # user + nice + system + irq + softirq (guest time is inside user)
    idle: float  # idle + iowait
    steal: float
    cpus: int  # number of cpuN lines: the host's online CPUs

    @property
    def total(self) -> float:
        return self.busy + self.idle + self.steal


def read_loadavg(proc: Path = PROC) -> float | None:
    """The 1-minute load average, or None when unreadable."""
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_cpu_ticks(proc: Path = PROC) -> CpuTicks | None:
    """Parse /proc/stat's ``cpu`` line (USER_HZ ticks) into seconds."""
    try:
        text = (proc / "stat").read_text()
    except OSError:
        return None
    hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    total_line, cpus = None, 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            total_line = line
        elif line.startswith("cpu") and line[3:4].isdigit():
            cpus += 1
    if total_line is None:
        return None
    try:
        v = [float(x) for x in total_line.split()[1:]] + [0.0] * 8
    except ValueError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return CpuTicks(busy=(user + nice + system + irq + softirq) / hz, idle=(idle + iowait) / hz,
                    steal=steal / hz, cpus=cpus or (os.cpu_count() or 1))


def read_psi_some_total(proc: Path = PROC) -> float | None:
    """Host CPU pressure: cumulative seconds in which some task waited for a CPU, or None."""
    try:
        text = (proc / "pressure" / "cpu").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                if field.startswith("total="):
                    try:
                        return int(field[6:]) / 1e6
                    except ValueError:
                        return None
    return None


def own_cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the script and its workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class HostLoadProbe:
    """Snapshots at the start and end of a run, load average samples in between."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self._t0 = time.monotonic()
        self._cpu0 = read_cpu_ticks(proc)
        self._psi0 = read_psi_some_total(proc)
        self._own0 = own_cpu_seconds()
        self._loads: list[float] = []
        self.sample()

    def sample(self) -> None:
        """Add one load average reading (called at each resource sample; one small read)."""
        load = read_loadavg(self.proc)
        if load is not None:
            self._loads.append(load)

    def finish(self, own_cpu_s: float | None = None) -> dict[str, Any]:
        """The run's host-load record; ``own_cpu_s`` overrides the run's own CPU seconds."""
        self.sample()
        wall = max(time.monotonic() - self._t0, 1e-9)
        out: dict[str, Any] = {"wall_s": wall}
        unavailable: dict[str, str] = {}
        if self._loads:
            out["loadavg"] = {"mean": sum(self._loads) / len(self._loads), "max": max(self._loads),
                              "samples": len(self._loads)}
        else:
            unavailable["loadavg"] = f"{self.proc}/loadavg is not readable"
        cpu1 = read_cpu_ticks(self.proc)
        if self._cpu0 is not None and cpu1 is not None:
            own = own_cpu_s if own_cpu_s is not None else own_cpu_seconds() - self._own0
            busy = cpu1.busy - self._cpu0.busy
            total = cpu1.total - self._cpu0.total
            out.update(host_cpus=cpu1.cpus, host_busy_cores=busy / wall, own_cores=own / wall,
                       other_cores=max(0.0, busy - own) / wall,
                       steal_fraction=(cpu1.steal - self._cpu0.steal) / total if total > 0 else 0.0)
        else:
            unavailable["cpu"] = f"{self.proc}/stat is not readable"
        psi1 = read_psi_some_total(self.proc)
        if self._psi0 is not None and psi1 is not None:
            out["psi_cpu_some"] = min(1.0, max(0.0, (psi1 - self._psi0) / wall))
        else:
            unavailable["psi"] = f"no {self.proc}/pressure/cpu (kernel without PSI, or not readable)"
        if unavailable:
            out["unavailable"] = unavailable
        return out
