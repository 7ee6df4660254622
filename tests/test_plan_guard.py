"""One plan at a time per experiment: a held plan lock in another process is seen, named and refused."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

from harness.errors import PlanRunningError
from harness.plan.guard import exclusive_plan, running_plans

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("held", flush=True)
time.sleep(60)
"""


def _hold(lock: Path) -> subprocess.Popen[str]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_running_plan_is_found_with_its_pid_and_a_finished_one_is_not(tmp_path: Path) -> None:
    plans = tmp_path / "results" / "plans"
    (plans / "20240101T000000-aaaaaa").mkdir(parents=True)
    (plans / "20240101T000000-aaaaaa" / "lock").write_text("999\n")  # left by a plan that ended
    holder = _hold(plans / "20240102T000000-bbbbbb" / "lock")
    try:
        assert running_plans(plans) == [("20240102T000000-bbbbbb", holder.pid)]
        assert running_plans(plans, exclude="20240102T000000-bbbbbb") == []
        with pytest.raises(PlanRunningError) as err:
            with exclusive_plan(plans, "20240103T000000-cccccc", nullcontext()):
                pytest.fail("a second plan must not start")
        assert err.value.exit_code == 2 and err.value.plan_id == "20240102T000000-bbbbbb"
        assert f"plan 20240102T000000-bbbbbb is running in this experiment (pid {holder.pid})" in str(err.value)
        assert "--parallel-plans" in (err.value.hint or "")
        entered = []
        with exclusive_plan(plans, "20240103T000000-cccccc", nullcontext(), allow_parallel=True):
            entered.append(True)
        assert entered == [True]
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead process's lock: nothing blocks the next plan.
    assert running_plans(plans) == []
    with exclusive_plan(plans, "20240103T000000-cccccc", nullcontext()):
        pass


class _PlanLock:
    """A plan's own lock as the plan package takes it: an exclusive flock on plans/<id>/lock, pid inside."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd = path, -1

    def __enter__(self) -> "_PlanLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def test_the_plans_own_lock_is_held_inside_the_block(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    with exclusive_plan(plans, "p1", _PlanLock(plans / "p1" / "lock")):
        probe = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                "from harness.plan.guard import running_plans; "
                                "print(running_plans(Path(sys.argv[1])))", str(plans)],
                               capture_output=True, text=True, check=True)
        assert "('p1'," in probe.stdout
    assert running_plans(plans) == []
