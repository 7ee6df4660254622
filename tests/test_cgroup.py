"""cgroup discovery and parsing: recorded v1/v2/hybrid trees, and this machine's real cgroups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.monitor.cgroup import (CgroupReader, Mount, discover, in_container, parse_cpu_max, parse_cpuset,
                                    parse_int, parse_mountinfo, parse_proc_cgroup, parse_psi, stat_value,
                                    translate)

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"
V1_MEMORY = Path("/sys/fs/cgroup/memory")
V1_CPU = Path("/sys/fs/cgroup/cpu")


def reader(name: str) -> CgroupReader:
    return CgroupReader(root=str(FIXTURES / name), host_cpus=16, host_memory=64 * 2**30)


# -- parsers ------------------------------------------------------------------------------

def test_parse_proc_cgroup_splits_combined_controllers_and_keeps_v2_entry() -> None:
    paths = parse_proc_cgroup("4:cpu,cpuacct:/docker/a\n1:name=systemd:/x\n0::/\n")
    assert paths == {"cpu": "/docker/a", "cpuacct": "/docker/a", "name=systemd": "/x", "": "/"}


def test_parse_mountinfo_reads_controllers_roots_and_escapes() -> None:
    text = ("626 620 0:27 /docker/a /sys/fs/cgroup/cpu,cpuacct ro master:12 - cgroup cgroup rw,cpu,cpuacct\n"
            "41 31 0:38 / /sys/fs/cgroup/my\\040dir rw - cgroup2 cgroup2 rw\n"
            "1181 1180 0:112 / /proc rw - proc proc rw\n")
    mounts = parse_mountinfo(text)
    assert mounts[0] == Mount(root="/docker/a", mount_point="/sys/fs/cgroup/cpu,cpuacct", fstype="cgroup",
                              controllers=frozenset({"cpu", "cpuacct"}))
    assert mounts[1].mount_point == "/sys/fs/cgroup/my dir" and mounts[1].fstype == "cgroup2"
    assert len(mounts) == 2


@pytest.mark.parametrize("text,expected", [("max", None), ("-1", None), ("9223372036854771712", None),
                                           (str(1 << 60), None), (str((1 << 60) - 1), (1 << 60) - 1),
                                           ("536870912\n", 536870912), ("", None), (None, None), ("junk", None)])
def test_parse_int_treats_max_minus_one_and_huge_as_unlimited(text: str | None, expected: int | None) -> None:
    assert parse_int(text) == expected


def test_parse_cpu_max_and_cpuset() -> None:
    assert parse_cpu_max("max 100000") is None
    assert parse_cpu_max("150000 100000\n") == 1.5
    assert parse_cpu_max("50000") == 0.5
    assert parse_cpuset("0-1,4,6-7\n") == 5
    assert parse_cpuset("") is None


def test_parse_psi_keeps_some_and_full() -> None:
    psi = parse_psi("some avg10=1.50 avg60=0.85 avg300=0.55 total=7193776\n"
                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert psi == {"some": {"avg10": 1.5, "avg60": 0.85, "avg300": 0.55, "total": 7193776},
                   "full": {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0}}


def test_stat_value_matches_whole_keys_only() -> None:
    text = "total_inactive_file 5\ninactive_file 3\nhierarchical_memory_limit 9223372036854771712\n"
    assert stat_value(text, "inactive_file") == 3 and stat_value(text, "total_inactive_file") == 5
    assert stat_value(text, "hierarchical_memory_limit") is None and stat_value(text, "rss") is None


def test_in_container_from_markers_or_pid1_cgroup(tmp_path: Path) -> None:
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/1/cgroup").write_text("0::/init.scope\n")
    assert not in_container(str(tmp_path))
    (tmp_path / "proc/1/cgroup").write_text("4:memory:/docker/0123abcd\n")
    assert in_container(str(tmp_path))


def test_translate_falls_back_to_the_mount_point_when_the_root_is_not_a_prefix(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup/memory").mkdir(parents=True)
    mount = Mount(root="/kubepods/abc", mount_point="/sys/fs/cgroup/memory", fstype="cgroup",
                  controllers=frozenset({"memory"}))
    assert translate("/kubepods/other", mount, str(tmp_path)) == [str(tmp_path / "sys/fs/cgroup/memory")]
    # "/.." style paths (outside the namespace root) must not escape the mount
    assert translate("/../../etc", mount, str(tmp_path)) == [str(tmp_path / "sys/fs/cgroup/memory")]


# -- recorded trees ------------------------------------------------------------------------

def test_v2_namespace_container_limits_usage_throttling_oom_and_psi() -> None:
    r = reader("v2_namespace")
    assert r.version == 2
    assert r.cpu_limit() == (1.5, "quota")
    assert r.memory_limit() == 536870912
    cpu, mem, psi, unavailable = r.read(now_ns=1_000_000_000)
    assert cpu["usage_ns"] == 5_000_000_000
    assert cpu["nr_periods"] == 200 and cpu["nr_throttled"] == 50 and cpu["throttled_ns"] == 2_500_000_000
    assert "cores" not in cpu  # a rate needs two reads
    assert mem == {"usage": 300000000, "working_set": 240000000, "limit": 536870912,
                   "percent_of_limit": round(100 * 240000000 / 536870912, 2), "peak": 400000000, "oom_kill": 2}
    assert psi["cpu"]["some"]["avg10"] == 12.5 and set(psi) == {"cpu", "memory", "io"}
    assert unavailable == {}


def test_v2_nested_walks_up_for_limits_and_for_missing_memory_files() -> None:
    r = reader("v2_nested")
    leaf = str(FIXTURES / "v2_nested/sys/fs/cgroup/system.slice/docker-abc.scope/trainer")
    assert r.paths.unified[0] == leaf
    # the child's cpu.max is "max": the parent's 2 cores apply; cpuset (8) is looser
    assert r.cpu_limit() == (2.0, "quota")
    assert r.memory_limit() == 1073741824
    cpu, mem, psi, unavailable = r.read()
    assert mem["usage"] == 500000000 and mem["working_set"] == 400000000 and mem["oom_kill"] == 0
    assert "peak" not in mem  # kernel before 5.19: no memory.peak, and no error either
    assert psi == {} and "psi" in unavailable


def test_v1_docker_without_namespace_translates_the_host_path() -> None:
    r = reader("v1_docker")
    assert r.version == 1 and not r.paths.hybrid
    assert r.paths.cpu == [str(FIXTURES / "v1_docker/sys/fs/cgroup/cpu,cpuacct")]
    assert r.cpu_limit() == (0.5, "quota")
    # limit_in_bytes says unlimited; the parent's limit shows through hierarchical_memory_limit
    assert r.memory_limit() == 268435456
    cpu, mem, _, _ = r.read()
    assert cpu["usage_ns"] == 9_000_000_000 and cpu["throttled_ns"] == 20_000_000_000
    assert mem["working_set"] == 200000000 - 50000000  # total_inactive_file wins over inactive_file
    assert mem["peak"] == 250000000 and mem["oom_kill"] == 1


def test_hybrid_host_uses_v1_controllers_and_v2_pressure() -> None:
    r = reader("hybrid")
    assert r.version == 1 and r.paths.hybrid
    assert r.paths.memory[0].endswith("memory/process_api/d75e49aa")
    assert r.cpu_limit() == (2.0, "cpuset")  # quota -1: unlimited
    assert r.memory_limit() == 2147483648
    _, mem, psi, _ = r.read()
    assert mem["working_set"] == 4423680 - 423680
    assert psi["cpu"]["full"]["total"] == 2345678


def test_v2_missing_controller_files_mark_only_those_parts_unavailable() -> None:
    r = reader("v2_missing")
    assert r.version == 2
    assert r.cpu_limit() == (16.0, "host")
    cpu, mem, psi, unavailable = r.read()
    assert mem == {} and psi == {}
    assert set(unavailable) == {"cpu.usage", "memory", "psi"}
    assert cpu["limit_cores"] == 16.0


def test_v1_moved_process_falls_back_to_the_mount_point() -> None:
    r = reader("v1_moved")
    assert r.cpu_limit() == (2.0, "quota")
    assert r.memory_limit() == 4096000


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    assert discover(str(tmp_path)).version is None
    cpu, mem, psi, unavailable = CgroupReader(root=str(tmp_path), host_cpus=4).read()
    assert (cpu, mem, psi) == ({}, {}, {}) and "cgroup" in unavailable


def test_rates_come_from_two_reads(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "tree"
    shutil.copytree(FIXTURES / "v2_namespace", root)
    r = CgroupReader(root=str(root), host_cpus=16)
    r.read(now_ns=1_000_000_000)
    stat = root / "sys/fs/cgroup/cpu.stat"
    # the file stays open and is re-read in place (pread), as the kernel's files are
    with open(stat, "r+") as f:
        f.write(f.read().replace("usage_usec 5000000", "usage_usec 5750000"))
    cpu, _, _, _ = r.read(now_ns=1_500_000_000)
    assert cpu["cores"] == 1.5 and cpu["percent_of_limit"] == 100.0


# -- this machine --------------------------------------------------------------------------

def test_this_machines_cgroup_is_found_and_read() -> None:
    r = CgroupReader()
    info = r.describe()
    assert info["version"] in (1, 2)
    assert info["cpu_limit_cores"] > 0
    first, _, _, _ = r.read()
    busy_until = time.monotonic() + 0.2
    while time.monotonic() < busy_until:
        pass
    cpu, mem, _, _ = r.read()
    assert cpu["usage_ns"] > first["usage_ns"]
    assert cpu["cores"] > 0
    assert mem["usage"] > 0 and mem["working_set"] <= mem["usage"]


def _v1_writable(controller: Path) -> bool:
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    is_v1 = any(m.fstype == "cgroup" and m.mount_point == str(controller) for m in mounts)
    return is_v1 and os.access(controller, os.W_OK)


PROBE = ("import json; from harness.monitor.cgroup import CgroupReader; r = CgroupReader(); r.read(); "
         "import time; t = time.monotonic()\n"
         "while time.monotonic() - t < {busy}: pass\n"
         "cpu, mem, _, _ = r.read(); print(json.dumps({{'info': r.describe(), 'cpu': cpu, 'mem': mem}}))")


def _run_in(cgroup_procs: list[Path], busy: float) -> dict:
    script = "; ".join(f"echo $$ > {p}" for p in cgroup_procs) + f' && exec "{sys.executable}" -c "$0"'
    out = subprocess.run(["sh", "-c", script, PROBE.format(busy=busy)], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


@pytest.fixture
def v1_cgroup(request: pytest.FixtureRequest) -> Path:
    controller = request.param
    if not _v1_writable(controller):
        pytest.skip(f"{controller} is not a writable cgroup v1 controller here")
    path = controller / f"harness_test_{os.getpid()}_{time.monotonic_ns()}"
    path.mkdir()
    yield path
    for _ in range(50):  # the probe has exited; the kernel frees the cgroup shortly after
        try:
            path.rmdir()
            break
        except OSError:
            time.sleep(0.1)


@pytest.mark.parametrize("v1_cgroup", [V1_MEMORY], indirect=True)
def test_real_v1_memory_limit_is_seen_from_inside(v1_cgroup: Path) -> None:
    (v1_cgroup / "memory.limit_in_bytes").write_text(str(300 * 2**20))
    result = _run_in([v1_cgroup / "cgroup.procs"], busy=0.0)
    assert result["info"]["memory_limit_bytes"] == 300 * 2**20
    assert result["info"]["path"] == str(v1_cgroup)
    assert 0 < result["mem"]["percent_of_limit"] < 100
    assert result["mem"]["oom_kill"] == 0


@pytest.mark.parametrize("v1_cgroup", [V1_CPU], indirect=True)
def test_real_cpu_quota_shows_as_limit_and_throttling(v1_cgroup: Path) -> None:
    """A process starved by a CPU quota must show: 0.2 cores, throttled periods."""
    (v1_cgroup / "cpu.cfs_period_us").write_text("100000")
    (v1_cgroup / "cpu.cfs_quota_us").write_text("20000")
    result = _run_in([v1_cgroup / "cgroup.procs"], busy=1.0)
    assert result["info"]["cpu_limit_cores"] == pytest.approx(0.2)
    assert result["info"]["cpu_limit_source"] == "quota"
    assert result["cpu"]["nr_throttled"] > 0
    assert result["cpu"]["throttled_ns"] > 0
