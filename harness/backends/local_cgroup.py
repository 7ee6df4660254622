"""A cgroup of its own for one local run: create, limit, enter, remove (cgroup v1 and v2).

A local run on a workstation or VM shares its cgroup with everything else, so that cgroup's
figures describe the machine, not the run. Where we may (root, or a delegated hierarchy), each
run gets ``<our cgroup>/harness/<pid>-<run id>`` in every hierarchy it needs: on v1 one per
controller mount (cpu, cpuacct, cpuset, memory), on v2 one directory. Nesting under our own
cgroup keeps the limits of whoever started us (a job's memory cgroup) in force. The child
enters before it executes anything (a ``preexec_fn`` that writes its pid), and the directories
are removed when the run ends; a harness killed with SIGKILL leaves them behind, so every
start removes the empty ones whose owner is gone (:func:`clean_stale`).

``root`` lets tests point everything at a recorded tree (tests/fixtures/cgroup).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from harness.monitor.cgroup_paths import Mount, parse_mountinfo, parse_proc_cgroup, translate

PARENT = "harness"
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
V2_CONTROLLERS = ("cpu", "cpuset", "memory")
CFS_PERIOD_US = 100_000
_REMOVE_WAIT_S = 5.0


class CgroupUnavailable(Exception):
    """No cgroup of our own can be made here; the message says why (for the warning line)."""


@dataclass(frozen=True)
class Hierarchy:
    """One place to make our directory: ``base`` is our own cgroup in that hierarchy."""

    version: int
    controllers: frozenset[str]
    base: str  # directory of our cgroup in this hierarchy
    top: str  # the mount point (v2 falls back to it: our own cgroup may hold processes)


def hierarchies(root: str = "/", pid: str = "self") -> list[Hierarchy]:
    """Where our cgroups are: the v1 mounts of cpu/cpuacct/cpuset/memory, else the v2 mount.

    Raises:
        CgroupUnavailable: when no cgroup file system is mounted.
    """
    try:
        with open(os.path.join(root, f"proc/{pid}/cgroup")) as f:
            proc = parse_proc_cgroup(f.read())
        with open(os.path.join(root, f"proc/{pid}/mountinfo")) as f:
            mounts = parse_mountinfo(f.read())
    except OSError as e:
        raise CgroupUnavailable(f"cannot read /proc/{pid}/cgroup ({e.strerror})") from None
    found: dict[str, Hierarchy] = {}
    for mount in (m for m in mounts if m.fstype == "cgroup"):
        wanted = mount.controllers.intersection(V1_CONTROLLERS)
        name = next((c for c in sorted(wanted) if c in proc), None)
        if name is None or mount.mount_point in found:
            continue
        found[mount.mount_point] = _hierarchy(1, frozenset(wanted), proc[name], mount, root)
    if found:
        return sorted(found.values(), key=lambda h: h.base)
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    if v2 and "" in proc:
        return [_hierarchy(2, frozenset(), proc[""], v2[0], root)]  # controllers: per directory, see _make_v2
    raise CgroupUnavailable("no cgroup file system is mounted")


def _hierarchy(version: int, controllers: frozenset[str], path: str, mount: Mount, root: str) -> Hierarchy:
    dirs = translate(path, mount, root)
    return Hierarchy(version=version, controllers=controllers, base=dirs[0], top=dirs[-1])


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _procs(directory: str) -> list[int]:
    return [int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split() if p.isdigit()]


@dataclass(frozen=True)
class Limits:
    """What to apply: CPU cores (quota), memory bytes, and a CPU list; ``None`` leaves one alone."""

    cpus: float | None = None
    memory: int | None = None
    cpuset: str | None = None


@dataclass
class OwnCgroup:
    """The directories of one run's cgroup; :meth:`enter` is the child's preexec, :meth:`remove` cleans up."""

    name: str
    version: int
    dirs: dict[str, str] = field(default_factory=dict)  # controller -> directory (v1); "" -> directory (v2)
    controllers: frozenset[str] = frozenset()  # v2: the controllers enabled for the directory
    enforced: dict[str, str] = field(default_factory=dict)  # setting -> how it is enforced

    @property
    def paths(self) -> list[str]:
        return sorted(set(self.dirs.values()))

    def enter_fn(self) -> Callable[[], None]:
        """A ``preexec_fn`` that moves the child into every directory before it executes anything.

        It only opens and writes precomputed paths: no imports, no locks (safe after fork).
        """
        procs = [os.path.join(d, "cgroup.procs") for d in self.paths]

        def enter() -> None:
            data = str(os.getpid()).encode()
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
        return enter

    def remove(self, wait_s: float = _REMOVE_WAIT_S) -> list[str]:
        """Kill what is still inside, remove the directories (and an empty parent); return what stayed."""
        left = []
        for directory in self.paths:
            if not _remove_dir(directory, wait_s, kill=True):
                left.append(directory)
            _remove_parent(os.path.dirname(directory))
        return left


def _remove_dir(directory: str, wait_s: float, kill: bool) -> bool:
    """rmdir a cgroup, SIGKILLing its stragglers first when ``kill``; True when it is gone."""
    deadline = time.monotonic() + wait_s
    while True:
        if not os.path.isdir(directory):
            return True
        if kill:
            if os.path.exists(os.path.join(directory, "cgroup.kill")):
                try:
                    _write(os.path.join(directory, "cgroup.kill"), "1")
                except OSError:
                    pass
            for pid in _procs(directory):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                return False
        time.sleep(0.05)


def _remove_parent(parent: str) -> None:
    if os.path.basename(parent) != PARENT:
        return
    try:
        os.rmdir(parent)  # fails while another run's directory is in it: that is fine
    except OSError:
        pass


def clean_stale(root: str = "/") -> list[str]:
    """Remove the empty run cgroups whose harness is gone (SIGKILLed); return the removed paths."""
    try:
        found = hierarchies(root)
    except CgroupUnavailable:
        return []
    removed = []
    for h in found:
        for base in {h.base, h.top}:
            parent = os.path.join(base, PARENT)
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for name in names:
                directory = os.path.join(parent, name)
                owner = name.split("-", 1)[0]
                if not os.path.isdir(directory) or not owner.isdigit() or _pid_alive(int(owner)):
                    continue
                if not _procs(directory) and _remove_dir(directory, 0.0, kill=False):
                    removed.append(directory)
            _remove_parent(parent)
    return removed


def create(run_id: str, limits: Limits, root: str = "/") -> OwnCgroup:
    """Make this run's cgroup in every hierarchy and apply ``limits``.

    Raises:
        CgroupUnavailable: when a directory cannot be made or entered (not root, read-only
            hierarchy, no delegation); whatever was made is removed first.
    """
    found = hierarchies(root)
    name = f"{os.getpid()}-{run_id}"
    group = OwnCgroup(name=name, version=found[0].version)
    try:
        for h in found:
            if h.version == 1:
                directory = _make_v1(h, name)
                for controller in h.controllers:
                    group.dirs[controller] = directory
            else:
                group.dirs[""], group.controllers = _make_v2(h, name)
        _check_writable(group)
        _apply(group, limits)
    except OSError as e:
        group.remove(wait_s=0.5)
        raise CgroupUnavailable(_reason(e)) from None
    return group


def _reason(e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM):
        return "no permission to make a cgroup (not root, and no delegated hierarchy)"
    if e.errno == errno.EROFS:
        return "the cgroup hierarchy is mounted read-only"
    return f"cannot make a cgroup: {e.strerror} ({e.filename})"


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass


def _make_v1(h: Hierarchy, name: str) -> str:
    parent = os.path.join(h.base, PARENT)
    for _ in range(3):  # a concurrent run may remove an empty parent between our two mkdirs
        _mkdir(parent)
        if "cpuset" in h.controllers:
            _inherit_cpuset(h.base, parent)
        try:
            os.mkdir(os.path.join(parent, name))
            break
        except FileNotFoundError:
            continue
    directory = os.path.join(parent, name)
    if "cpuset" in h.controllers:
        _inherit_cpuset(parent, directory)
    return directory


def _inherit_cpuset(src: str, dst: str) -> None:
    """v1 cpusets start empty (no task may enter) unless clone_children is set: copy the parent's."""
    for key in ("cpuset.cpus", "cpuset.mems"):
        if not _read(os.path.join(dst, key)):
            _write(os.path.join(dst, key), _read(os.path.join(src, key)))


def _make_v2(h: Hierarchy, name: str) -> tuple[str, frozenset[str]]:
    """v2: processes live only in leaves, so controllers are enabled down to ``harness/``.

    Our own cgroup usually holds processes (us), where enabling controllers fails with EBUSY;
    then the mount's root is used, which is exempt from that rule. Returns the directory and
    the controllers it has.
    """
    last: OSError | None = None
    for base in dict.fromkeys((h.base, h.top)):
        available = _v2_controllers(base)
        enable = " ".join(f"+{c}" for c in sorted(available))
        parent = os.path.join(base, PARENT)
        try:
            if enable:
                _write(os.path.join(base, "cgroup.subtree_control"), enable)
            _mkdir(parent)
            if enable:
                _write(os.path.join(parent, "cgroup.subtree_control"), enable)
            directory = os.path.join(parent, name)
            os.mkdir(directory)
            return directory, available
        except OSError as e:
            last = e
            _remove_parent(parent)
    assert last is not None
    raise last


def _v2_controllers(directory: str) -> frozenset[str]:
    return frozenset(_read(os.path.join(directory, "cgroup.controllers")).split()).intersection(V2_CONTROLLERS)


def _check_writable(group: OwnCgroup) -> None:
    """Entering needs write access to cgroup.procs; mkdir alone can succeed without it."""
    for directory in group.paths:
        procs = os.path.join(directory, "cgroup.procs")
        if os.path.exists(procs) and not os.access(procs, os.W_OK):
            raise PermissionError(errno.EACCES, "cgroup.procs is not writable", directory)


def _apply(group: OwnCgroup, limits: Limits) -> None:
    """Write the limits whose controller this cgroup has; the others stay out of ``enforced``."""
    v1 = group.version == 1

    def where(controller: str) -> str | None:
        return group.dirs.get(controller if v1 else "") if v1 or controller in group.controllers else None

    cpu, memory, cpuset = where("cpu"), where("memory"), where("cpuset")
    if limits.cpus is not None and cpu is not None:
        quota = max(1000, int(round(limits.cpus * CFS_PERIOD_US)))
        if v1:
            _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(quota))
        else:
            _write(os.path.join(cpu, "cpu.max"), f"{quota} {CFS_PERIOD_US}")
        group.enforced["cpus"] = f"CPU quota of {limits.cpus:g} cores"
    if limits.memory is not None and memory is not None:
        limit_file, swap_file, swap = (("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", str(limits.memory))
                                       if v1 else ("memory.max", "memory.swap.max", "0"))
        _write(os.path.join(memory, limit_file), str(limits.memory))
        if os.path.exists(os.path.join(memory, swap_file)):
            _write(os.path.join(memory, swap_file), swap)
        group.enforced["memory"] = f"memory limit of {limits.memory} bytes (no swap)"
    if limits.cpuset is not None and cpuset is not None:
        _write(os.path.join(cpuset, "cpuset.cpus"), limits.cpuset)
        group.enforced["cpuset"] = f"cpuset {limits.cpuset}"
