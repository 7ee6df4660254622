"""Where this process's cgroup is: ``/proc/self/cgroup`` translated against the mount table.

The path in ``/proc/self/cgroup`` is translated against the mount's root in
``/proc/self/mountinfo`` (they differ inside containers without a cgroup namespace, and inside
one the path is ``/``). ``root`` lets tests point discovery at a recorded tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mount:
    """One cgroup line of ``/proc/self/mountinfo``."""

    root: str  # the cgroup path that is mounted at mount_point
    mount_point: str
    fstype: str  # cgroup | cgroup2
    controllers: frozenset[str]


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as ``{controller: path}``; the v2 entry is keyed ``""``.

    ``name=systemd`` hierarchies keep their name; v1 lines list several controllers
    (``4:cpu,cpuacct:/docker/abc``), each gets the path.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = path
        else:
            for controller in controllers.split(","):
                paths[controller] = path
    return paths


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts of a ``/proc/self/mountinfo``."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = set(tail[2].split(","))
        if tail[0] == "cgroup2":
            controllers: frozenset[str] = frozenset()
        else:
            # super options hold the controllers (and rw, name=... for named hierarchies)
            controllers = frozenset(o for o in options if o not in ("rw", "ro") and "=" not in o) | \
                frozenset(o for o in options if o.startswith("name="))
        mounts.append(Mount(root=_unescape(fields[3]), mount_point=_unescape(fields[4]),
                            fstype=tail[0], controllers=controllers))
    return mounts


def translate(cgroup_path: str, mount: Mount, root: str = "/") -> list[str]:
    """Directories from the process's cgroup up to the mount point, leaf first.

    The mount shows ``mount.root`` at ``mount.mount_point``; the process's path is relative
    to the hierarchy (or to its cgroup namespace). When the path does not start with the
    mount root (a cgroup namespace, or a process moved after the mount) the mount point
    itself is the best guess, as automaxprocs and the JVM do.
    """
    mount_root = mount.root.rstrip("/") or "/"
    path = cgroup_path.rstrip("/") or "/"
    if mount_root == "/":
        rel = path
    elif path == mount_root or path.startswith(mount_root + "/"):
        rel = path[len(mount_root):] or "/"
    else:
        rel = "/"
    top = os.path.join(root, mount.mount_point.lstrip("/"))
    leaf = os.path.normpath(os.path.join(top, rel.lstrip("/"))) if rel != "/" else top
    if not leaf.startswith(top) or not os.path.isdir(leaf):
        leaf = top
    dirs = [leaf]
    while dirs[-1] != top and len(dirs[-1]) > len(top):
        dirs.append(os.path.dirname(dirs[-1]))
    return dirs


@dataclass
class CgroupPaths:
    """Where each controller's files are: directories leaf first (walked up for limits)."""

    version: int | None  # 1, 2, or None when no cgroup filesystem is mounted
    cpu: list[str] = field(default_factory=list)
    cpuacct: list[str] = field(default_factory=list)
    cpuset: list[str] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    unified: list[str] = field(default_factory=list)  # v2 dirs (also the PSI source on hybrid hosts)
    hybrid: bool = False


def discover(root: str = "/", pid: str = "self") -> CgroupPaths:
    """Find this process's cgroup directories from ``/proc/<pid>/cgroup`` and ``mountinfo``."""
    try:
        with open(os.path.join(root, f"proc/{pid}/cgroup")) as f:
            proc = parse_proc_cgroup(f.read())
        with open(os.path.join(root, f"proc/{pid}/mountinfo")) as f:
            mounts = parse_mountinfo(f.read())
    except OSError:
        return CgroupPaths(version=None)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    paths = CgroupPaths(version=None)

    def v1_dirs(controller: str) -> list[str]:
        if controller not in proc:
            return []
        for mount in v1:
            if controller in mount.controllers:
                return translate(proc[controller], mount, root)
        return []

    for controller in ("cpu", "cpuacct", "cpuset", "memory"):
        setattr(paths, controller, v1_dirs(controller))
    if "" in proc and v2:
        paths.unified = translate(proc[""], v2[0], root)
    if paths.cpu or paths.memory or paths.cpuacct:
        paths.version = 1
        paths.hybrid = bool(paths.unified)
    elif paths.unified:
        paths.version = 2
        paths.cpu = paths.cpuacct = paths.cpuset = paths.memory = paths.unified
    return paths


def in_container(root: str = "/") -> bool:
    """Whether we run in a container (seed 004: the monitor "detects Docker"): marker files or cgroup paths."""
    if os.path.exists(os.path.join(root, ".dockerenv")) or os.path.exists(os.path.join(root, "run/.containerenv")):
        return True
    try:
        with open(os.path.join(root, "proc/1/cgroup")) as f:
            text = f.read()
    except OSError:
        return False
    return any(word in text for word in ("/docker", "/kubepods", "/containerd", "/libpod", "/lxc"))
