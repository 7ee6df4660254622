"""A cgroup of its own for a local run: parsing on recorded v2 trees, the real thing on this host (v1, root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import local_cgroup as lc
from harness.backends.local_limits import OWN_CGROUP, PROCESS_TREE, Wanted, isolate, warning_line

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"


def _copy(name: str, tmp_path: Path) -> str:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return str(root)


# --------------------------------------------------------------------------- recorded trees
def test_v2_delegated_tree_is_parsed_with_its_controllers(tmp_path):
    root = _copy("v2_delegated", tmp_path)
    (h,) = lc.hierarchies(root)
    assert h.version == 2
    assert lc._v2_controllers(h.base) == {"cpu", "cpuset", "memory"}  # io, pids... are not ours
    assert h.base == f"{root}/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope"
    assert h.top == f"{root}/sys/fs/cgroup"


def test_v2_create_writes_limits_and_enables_controllers_down_to_harness(tmp_path):
    root = _copy("v2_delegated", tmp_path)
    group = lc.create("r1", lc.Limits(cpus=1.5, memory=64 << 20, cpuset="0-1"), root)
    (directory,) = group.paths
    base = Path(f"{root}/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
    assert directory == str(base / "harness" / f"{os.getpid()}-r1")
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory"
    assert (base / "harness" / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory"
    assert Path(directory, "cpu.max").read_text() == "150000 100000"
    assert Path(directory, "memory.max").read_text() == str(64 << 20)
    assert Path(directory, "cpuset.cpus").read_text() == "0-1"
    assert set(group.enforced) == {"cpus", "memory", "cpuset"}


def test_v2_falls_back_to_the_root_when_our_cgroup_holds_processes(tmp_path):
    root = _copy("v2_delegated", tmp_path)
    base = Path(f"{root}/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
    # The kernel refuses controllers below a cgroup with processes (EBUSY); a folder in the
    # file's place makes the write fail the same way on a plain file system.
    (base / "cgroup.subtree_control").unlink()
    (base / "cgroup.subtree_control").mkdir()
    group = lc.create("r2", lc.Limits(memory=1 << 30), root)
    assert group.paths == [f"{root}/sys/fs/cgroup/harness/{os.getpid()}-r2"]
    assert not (base / "harness").exists()
    assert Path(group.paths[0], "memory.max").read_text() == str(1 << 30)


def test_v2_without_the_memory_controller_enforces_what_it_can(tmp_path):
    root = _copy("v2_delegated", tmp_path)
    Path(root, "sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.controllers").write_text("cpu pids\n")
    group = lc.create("r3", lc.Limits(cpus=1, memory=1 << 30), root)
    assert set(group.enforced) == {"cpus"}
    assert not Path(group.paths[0], "memory.max").exists()


def test_hybrid_tree_uses_the_v1_controllers_and_nests_memory_under_our_own(tmp_path):
    root = str(FIXTURES / "hybrid")
    found = {tuple(sorted(h.controllers)): h for h in lc.hierarchies(root)}
    assert set(found) == {("cpu",), ("cpuacct",), ("cpuset",), ("memory",)}
    assert all(h.version == 1 for h in found.values())
    assert found[("memory",)].base == f"{root}/sys/fs/cgroup/memory/process_api/d75e49aa"


# --------------------------------------------------------------------------- this host (v1, root)
def _listing() -> set[str]:
    found = set()
    for h in lc.hierarchies():
        for base in {h.base, h.top}:
            for dirpath, dirnames, _ in os.walk(base):
                found.update(os.path.join(dirpath, d) for d in dirnames if "harness" in os.path.join(dirpath, d))
    return found


def test_real_cgroup_limits_a_child_and_is_removed():
    before = _listing()
    group = lc.create("real1", lc.Limits(cpus=0.5, memory=256 << 20, cpuset="0"))
    try:
        proc = subprocess.run([sys.executable, "-c", "print(open('/proc/self/cgroup').read())"],
                              preexec_fn=group.enter_fn(), capture_output=True, text=True, check=True)
        inside = {line.split(":")[1]: line.split(":")[2] for line in proc.stdout.split() if ":" in line}
        for controller in ("cpu", "cpuacct", "cpuset", "memory"):
            assert inside[controller].endswith(f"/harness/{group.name}"), proc.stdout
        assert Path(group.dirs["cpu"], "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert Path(group.dirs["memory"], "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
        assert Path(group.dirs["cpuset"], "cpuset.cpus").read_text().strip() == "0"
    finally:
        assert group.remove() == []
    assert _listing() == before


def test_remove_kills_what_is_left_inside():
    group = lc.create("real2", lc.Limits())
    proc = subprocess.Popen(["sleep", "60"], preexec_fn=group.enter_fn())
    try:
        assert group.remove() == []
        assert proc.wait(timeout=10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stale_cgroups_of_a_dead_harness_are_removed_at_the_next_start():
    before = _listing()
    dead = subprocess.Popen(["true"])
    dead.wait()
    made = []
    for h in lc.hierarchies():
        parent = os.path.join(h.base, lc.PARENT)
        os.makedirs(os.path.join(parent, f"{dead.pid}-stale"), exist_ok=True)
        made.append(os.path.join(parent, f"{dead.pid}-stale"))
    alive = lc.create("alive", lc.Limits())  # ours: the owner (this process) lives
    try:
        removed = lc.clean_stale()
        assert sorted(removed) == sorted(made)
        assert all(os.path.isdir(d) for d in alive.paths)
    finally:
        alive.remove()
    assert _listing() == before


def test_isolation_with_own_cgroup_names_only_the_host_settings():
    iso = isolate("iso1", Wanted(cpus=1, memory=64 << 20, shm=2 << 30, network="none", ipc="private"))
    try:
        assert iso.cpu_source == OWN_CGROUP and set(iso.enforced) == {"cpus", "memory"}
        assert set(iso.not_enforced) == {"shm_size", "network", "ipc"}
        line = warning_line(iso)
        assert line is not None and "shm-size 2g" in line and "network none" in line and "\n" not in line
    finally:
        assert iso.close() == []


def test_isolation_without_cgroup_pins_cpus_and_names_memory():
    iso = isolate("iso2", Wanted(cpus=1, memory=64 << 20), allow_cgroup=False)
    assert iso.cpu_source == PROCESS_TREE and iso.cgroup is None
    assert iso.affinity == {sorted(os.sched_getaffinity(0))[0]}
    assert "affinity" in iso.enforced["cpus"] and set(iso.not_enforced) == {"memory"}
    out = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                         preexec_fn=iso.preexec(), capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(iso.affinity))
