"""Local runs measure and limit only themselves: real runs on this host (root, cgroup v1).

Without permission to make a cgroup (a user made with ``useradd``; a hierarchy mounted
read-only in a mount namespace of its own) the process-tree source is used and one warning line
names what is not enforced. Every test lists the hierarchy's harness
cgroups before and after: nothing is left behind (normal end, timeout, Ctrl-C, SIGKILL of harness).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import start_harness_until_ready

from harness.backends import RunOptions, RunRequest, local_cgroup, run_mode

SLEEPER = "import time\nprint('SCRIPT-READY', flush=True)\ntime.sleep(4)\n"
TWO_THREADS = """import hashlib, threading, time
data = b"x" * (8 << 20)
def burn():
    end = time.monotonic() + 5
    while time.monotonic() < end:
        hashlib.sha256(data).digest()  # releases the GIL: two threads use two cores
threads = [threading.Thread(target=burn) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
"""
ALLOCATOR = "b = b'x' * (1 << 30)\nprint(len(b))\n"
USER = "harness-nonroot"


def harness_cgroups() -> set[str]:
    """The run cgroups (``harness/<pid>-<run id>``) in every hierarchy we could make them in."""
    found = set()
    for h in local_cgroup.hierarchies():
        for base in {h.base, h.top}:
            parent = os.path.join(base, local_cgroup.PARENT)
            if os.path.isdir(parent):
                found.update(os.path.join(parent, d) for d in os.listdir(parent))
    return found


def _of_other_live_harnesses(paths: set[str]) -> set[str]:
    """Run cgroups whose harness still runs and is not this test (other runs sharing the machine)."""
    owners = {p: os.path.basename(p).split("-", 1)[0] for p in paths}
    return {p for p, o in owners.items() if o.isdigit() and int(o) != os.getpid() and local_cgroup._pid_alive(int(o))}


@pytest.fixture
def no_leftovers():
    before = harness_cgroups()
    yield
    after = harness_cgroups()
    assert not after - before - _of_other_live_harnesses(after)


def _run(exp, mode: str, **options):
    outcome = run_mode(RunRequest(experiment=exp, mode=mode, seed=0, options=RunOptions(backend="local", **options),
                                  echo=None))
    return outcome, json.loads((outcome.run_dir / "results.json").read_text())


@pytest.fixture
def busy_loop():
    """A one-core busy loop beside the run, as on a machine where other work runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("own_cgroup", [True, False], ids=["own cgroup", "process tree"])
def test_sleeping_run_beside_a_busy_loop_reports_its_own_cpu(tiny_experiment, busy_loop, no_leftovers, monkeypatch,
                                                              own_cgroup):
    if not own_cgroup:
        monkeypatch.setenv("HARNESS_LOCAL_CGROUP", "0")
    exp = tiny_experiment({"baseline": SLEEPER})
    outcome, data = _run(exp, "baseline")
    assert outcome.status == "completed"
    assert data["run"]["cpu_source"] == ("own cgroup" if own_cgroup else "process tree")
    mean = data["modes"]["baseline"]["summary"]["cpu"]["mean_cores"]
    assert mean < 0.3, (mean, "the busy loop beside the run was counted")
    assert busy_loop.poll() is None  # it really ran all along


def test_cpu_quota_throttles_a_two_thread_script(tiny_experiment, no_leftovers):
    # Half a core rather than one: on a busy 2-core machine the two threads do not always get
    # more than one core between them, and then a quota of 1 is never reached (nothing to throttle).
    exp = tiny_experiment({"baseline": TWO_THREADS})
    outcome, data = _run(exp, "baseline", cpus=0.5)
    assert outcome.status == "completed"
    assert data["run"]["limits"]["enforced"]["cpus"] == "CPU quota of 0.5 cores"
    cpu = data["modes"]["baseline"]["summary"]["cpu"]
    assert cpu["throttled_fraction"] > 0.2 and cpu["throttled_seconds"] > 0, cpu
    assert cpu["mean_cores"] < 0.6, cpu
    assert data["modes"]["baseline"]["resource_usage"]["limits"]["cpu_cores"] == 0.5


def test_memory_64m_ends_a_1gb_allocator_as_oom_killed(tiny_experiment, no_leftovers):
    exp = tiny_experiment({"baseline": ALLOCATOR})
    outcome, data = _run(exp, "baseline", memory="64m")
    assert (outcome.status, data["run"]["status"]) == ("oom_killed", "oom_killed")
    assert data["run"]["limits"]["enforced"]["memory"].startswith("memory limit of 67108864 bytes")
    assert data["modes"]["baseline"]["summary"]["memory"]["oom_kills"] >= 1


def test_timeout_leaves_no_cgroup(tiny_experiment, no_leftovers):
    exp = tiny_experiment({"baseline": "import time\ntime.sleep(60)\n"})
    outcome, _ = _run(exp, "baseline", timeout=1)
    assert outcome.status == "timeout"


def test_ctrl_c_of_harness_leaves_no_cgroup(tiny_experiment, no_leftovers):
    exp = tiny_experiment({"baseline": "import time\nprint('SCRIPT-READY', flush=True)\ntime.sleep(60)\n"})
    proc = start_harness_until_ready(["run", "baseline", "--backend", "local", "-e", str(exp.path)])
    assert any(d.endswith(tuple(os.listdir(exp.results_dir / "baseline"))) for d in harness_cgroups())
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130


def test_sigkill_of_harness_is_cleaned_at_the_next_start(tiny_experiment, no_leftovers):
    exp = tiny_experiment({"baseline": "import time\nprint('SCRIPT-READY', flush=True)\ntime.sleep(2)\n",
                           "other": "print('hi')\n"})
    proc = start_harness_until_ready(["run", "baseline", "--backend", "local", "-e", str(exp.path)])
    (run_dir,) = (exp.results_dir / "baseline").iterdir()
    ours = [d for d in harness_cgroups() if d.endswith(run_dir.name)]
    assert ours
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30  # the orphaned agent finishes its 2 s script, its cgroup empties
    while any(local_cgroup._procs(d) for d in ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(os.path.isdir(d) for d in ours)  # left behind by the SIGKILL...
    outcome, _ = _run(exp, "other")  # ...and removed when harness starts the next run
    assert outcome.status == "completed"
    assert not any(os.path.isdir(d) for d in ours)


# --------------------------------------------------------------------------- no permission
@pytest.fixture(scope="module")
def nonroot_uid() -> int:
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    return int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)


def test_non_root_gets_the_process_tree_and_a_warning(nonroot_uid, no_leftovers):
    """A child that became a user made with useradd (this interpreter lives under /root, which
    that user may not enter, so the child forks with everything loaded and then drops root)."""
    from harness.backends.local_limits import Wanted, isolate, warning_line

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, report through the pipe and _exit
        try:
            os.setgid(nonroot_uid)
            os.setuid(nonroot_uid)
            iso = isolate("nonroot", Wanted(cpus=1, memory=512 << 20, network="none"))
            os.write(write, json.dumps({"uid": os.getuid(), "source": iso.cpu_source, "record": iso.record(),
                                        "line": warning_line(iso)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        got = json.loads(f.read())
    os.waitpid(pid, 0)
    assert got["uid"] == nonroot_uid != 0
    assert got["source"] == "process tree"
    assert got["record"]["limits"]["why_no_cgroup"].startswith("no permission to make a cgroup")
    assert got["record"]["limits"]["enforced"]["cpus"].startswith("CPU affinity to CPUs ")
    assert got["line"].startswith("warning: the local backend does not enforce memory 512m: no cgroup of its own "
                                  "(no permission") and "network none" in got["line"]


def test_read_only_hierarchy_runs_with_the_process_tree_and_warns_once(tiny_experiment, busy_loop, no_leftovers):
    exp = tiny_experiment({"baseline": SLEEPER})
    remount = "; ".join(f"mount -o remount,bind,ro {h.top}" for h in local_cgroup.hierarchies())
    cmd = (f"{remount}; exec {sys.executable} -m harness.cli run baseline --backend local --memory 512m "
           f"--cpus 1 -e {exp.path}")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("warning: the local")]
    assert len(warnings) == 1, proc.stdout
    assert "memory 512m: no cgroup of its own (the cgroup hierarchy is mounted read-only)" in warnings[0]
    assert "network none" in warnings[0] and "shm-size 2g" in warnings[0]
    (run_dir,) = (exp.results_dir / "baseline").iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert data["run"]["cpu_source"] == "process tree"
    assert "memory" in data["run"]["limits"]["not_enforced"]
    assert data["run"]["limits"]["enforced"]["cpus"].startswith("CPU affinity to CPUs ")
    assert data["modes"]["baseline"]["summary"]["cpu"]["mean_cores"] < 0.3
