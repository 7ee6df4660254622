"""Which of a run's settings the local backend enforces, how, and the one warning about the rest.

With a cgroup of its own (:mod:`harness.backends.local_cgroup`) a local run gets the CPU quota,
memory limit and CPU set a container would; without one, a CPU count becomes CPU affinity and
the memory limit is not enforced. Network, IPC and /dev/shm are the host's either way. What is
enforced and what is not is recorded in the run's results, so that compare can say when two
modes ran under different limits, and named in one warning line before a plan starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.backends.local_cgroup import CgroupUnavailable, Limits, OwnCgroup, clean_stale, create
from harness.monitor.process_tree import OWN_CGROUP, PROCESS_TREE


@dataclass(frozen=True)
class Wanted:
    """The settings a run asks for (flags over config); ``None`` means: not asked for."""

    cpus: float | None = None
    memory: int | None = None
    cpuset: str | None = None
    shm: int | None = None
    network: str | None = None
    ipc: str | None = None

    @classmethod
    def from_settings(cls, settings: Any, cpuset: str | None = None) -> "Wanted":
        """From a ``RunSettings`` (anything with cpus, memory, shm, network, ipc)."""
        return cls(cpus=settings.cpus, memory=settings.memory, cpuset=cpuset, shm=settings.shm,
                   network=settings.network, ipc=settings.ipc)


def _size(n: int) -> str:
    for unit, scale in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}b"


def host_only(wanted: Wanted) -> dict[str, str]:
    """Settings no local process can have (it shares the host's network, IPC and /dev/shm)."""
    out = {}
    if wanted.network not in (None, "host"):
        out["network"] = f"network {wanted.network}: the run uses the host's network"
    if wanted.ipc not in (None, "host"):
        out["ipc"] = f"ipc {wanted.ipc}: the run shares the host's IPC namespace"
    if wanted.shm is not None:
        out["shm_size"] = f"shm-size {_size(wanted.shm)}: the run uses the host's /dev/shm"
    return out


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _parse_cpuset(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def affinity_for(wanted: Wanted) -> set[int] | None:
    """CPUs to pin a run without a cgroup to: the cpuset, else the first ``ceil(cpus)`` we may use."""
    allowed = os.sched_getaffinity(0)
    pool = _parse_cpuset(wanted.cpuset) & allowed if wanted.cpuset else set(allowed)
    if wanted.cpus is not None:
        pool = set(sorted(pool)[:max(1, math.ceil(wanted.cpus))])
    return pool if pool and pool != allowed else None


@dataclass
class Isolation:
    """How one local run is measured and limited; :meth:`preexec` is the child's, :meth:`close` cleans up."""

    cpu_source: str
    cgroup: OwnCgroup | None = None
    affinity: set[int] | None = None
    enforced: dict[str, str] = field(default_factory=dict)
    not_enforced: dict[str, str] = field(default_factory=dict)
    why_no_cgroup: str | None = None
    cgroup_paths: list[str] = field(default_factory=list)

    def preexec(self) -> Callable[[], None] | None:
        enter = self.cgroup.enter_fn() if self.cgroup is not None else None
        cpus = self.affinity

        def prepare() -> None:
            if enter is not None:
                enter()
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
        return prepare if enter is not None or cpus is not None else None

    def record(self) -> dict[str, Any]:
        """What goes into results.json: the source and the limits, enforced or not."""
        limits = {"enforced": dict(self.enforced), "not_enforced": dict(self.not_enforced),
                  "cgroup": self.cgroup_paths or None, "why_no_cgroup": self.why_no_cgroup}
        return {"cpu_source": self.cpu_source, "limits": limits}

    def close(self) -> list[str]:
        """Remove the cgroup (killing stragglers); return directories that could not be removed."""
        if self.cgroup is None:
            return []
        left, self.cgroup = self.cgroup.remove(), None
        return left


def isolate(run_id: str, wanted: Wanted, root: str = "/", allow_cgroup: bool = True) -> Isolation:
    """A cgroup of the run's own with the limits applied when allowed, else affinity and a process-tree source."""
    clean_stale(root)
    why = "turned off (HARNESS_LOCAL_CGROUP=0)" if not allow_cgroup else None
    if allow_cgroup:
        try:
            group = create(run_id, Limits(cpus=wanted.cpus, memory=wanted.memory, cpuset=wanted.cpuset), root)
        except CgroupUnavailable as e:
            why = str(e)
        else:
            iso = Isolation(OWN_CGROUP, cgroup=group, enforced=dict(group.enforced), cgroup_paths=group.paths)
            _missing(iso, wanted, "this cgroup lacks the controller")
            iso.not_enforced.update(host_only(wanted))
            return iso
    iso = Isolation(PROCESS_TREE, why_no_cgroup=why)
    iso.affinity = affinity_for(wanted)
    if iso.affinity is not None:
        what = "cpus" if wanted.cpus is not None else "cpuset"
        iso.enforced[what] = f"CPU affinity to CPUs {_cpu_list(iso.affinity)}"
        if wanted.cpus is not None and wanted.cpuset is not None:
            iso.enforced["cpuset"] = iso.enforced["cpus"]
    _missing(iso, wanted, f"no cgroup of its own ({why})")
    iso.not_enforced.update(host_only(wanted))
    return iso


def _missing(iso: Isolation, wanted: Wanted, why: str) -> None:
    if wanted.memory is not None and "memory" not in iso.enforced:
        iso.not_enforced["memory"] = f"memory {_size(wanted.memory)}: {why}"
    if wanted.cpus is not None and "cpus" not in iso.enforced:
        iso.not_enforced["cpus"] = f"cpus {wanted.cpus:g}: {why}"
    if wanted.cpuset is not None and "cpuset" not in iso.enforced:
        iso.not_enforced["cpuset"] = f"cpuset {wanted.cpuset}: {why}"


def probe(wanted: Wanted, root: str = "/", allow_cgroup: bool = True) -> Isolation:
    """What :func:`isolate` would enforce, found by making (and removing) a cgroup: for the warning line."""
    iso = isolate(f"probe{os.getpid()}", wanted, root, allow_cgroup)
    iso.close()
    return iso


def container_limits(wanted: Wanted) -> dict[str, Any]:
    """The record of a Docker run: the engine enforces every setting it is given."""
    enforced = {}
    if wanted.cpus is not None:
        enforced["cpus"] = f"CPU quota of {wanted.cpus:g} cores"
    if wanted.memory is not None:
        enforced["memory"] = f"memory limit of {wanted.memory} bytes"
    if wanted.cpuset is not None:
        enforced["cpuset"] = f"cpuset {wanted.cpuset}"
    if wanted.shm is not None:
        enforced["shm_size"] = f"shm-size {_size(wanted.shm)}"
    if wanted.network is not None:
        enforced["network"] = f"network {wanted.network}"
    if wanted.ipc is not None:
        enforced["ipc"] = f"ipc {wanted.ipc}"
    return {"enforced": enforced, "not_enforced": {}}


def warning_line(iso: Isolation) -> str | None:
    """One line naming every setting the local backend does not enforce (None when it enforces all)."""
    if not iso.not_enforced:
        return None
    return "warning: the local backend does not enforce " + "; ".join(iso.not_enforced.values())
