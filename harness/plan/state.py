"""A plan on disk: ``results/plans/<plan_id>/`` with state.json, errors.log and the run lock.

state.json is rewritten atomically at every transition, so that a crash or a SIGKILL of
``harness run`` loses at most the run in flight.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from harness.diskspace import RESERVE_FILENAME, Reserve, with_room
from harness.errors import PlanError, PlanStateError
from harness.nofollow import read_bytes
from harness.experiment import Experiment
from harness.names import is_safe_name
from harness.plan.model import Plan, PlannedRun
from harness.plan.state_model import NEW_PLAN_HINT, validate_state
from harness.results.io import write_json_atomic
from harness.results.schema import STDOUT_FILENAME

STATE_FILENAME = "state.json"
ERRORS_FILENAME = "errors.log"
LOCK_FILENAME = "lock"


def plans_dir(experiment: Experiment) -> Path:
    return experiment.results_dir / "plans"


def plan_dir(experiment: Experiment, plan_id: str) -> Path:
    return plans_dir(experiment) / plan_id


def reserve_of(experiment: Experiment, plan_id: str) -> Reserve:
    """The plan's reserve file: room to save state.json and record a run when the disk is full."""
    return Reserve(plan_dir(experiment, plan_id) / RESERVE_FILENAME)


def save_plan(experiment: Experiment, plan: Plan) -> Path:
    """Rewrite state.json atomically: a reader (or a resume after SIGKILL) sees old or new, never half.

    Raises:
        PlanError: when it cannot be written even after giving up the plan's reserve.
    """
    path = plan_dir(experiment, plan.plan_id) / STATE_FILENAME
    data = plan.to_dict()
    try:
        with_room(lambda: write_json_atomic(path, data), reserve_of(experiment, plan.plan_id))
    except OSError as e:
        raise PlanError(f"cannot save {path}: {(e.strerror or str(e)).lower()}") from e
    return path


def list_plans(experiment: Experiment) -> list[str]:
    """Plan ids of the experiment, oldest first (ids sort by time).

    A folder counts when it holds anything named state.json, so that a broken one is reported,
    not silently passed over for an older plan.
    """
    root = plans_dir(experiment)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and os.path.lexists(p / STATE_FILENAME))


def load_plan(experiment: Experiment, plan_id: str = "latest") -> Plan:
    """Load a plan by id, or the newest one, through the state.json model (``plan.state_model``).

    Raises:
        PlanStateError: no such plan, an unsafe plan id, or a state.json that does not validate
            (bad input: exit 2, naming the file and the field).
    """
    if plan_id != "latest" and not is_safe_name(plan_id):
        shown = plan_id if len(plan_id) <= 40 else plan_id[:40] + "..."
        raise PlanStateError(f"--resume: {shown!r} is not a plan id (like 20240115T103000-3f9a1c)",
                             hint="`harness run --resume` picks the latest plan")
    ids = list_plans(experiment)
    if plan_id == "latest":
        if not ids:
            raise PlanStateError(f"no plan to resume in {plans_dir(experiment)}",
                                 hint="start one with `harness run baseline optimization`")
        plan_id = ids[-1]
    elif plan_id not in ids:
        known = ", ".join(ids[-5:]) or "none"
        raise PlanStateError(f"no plan {plan_id!r} in {plans_dir(experiment)} (latest: {known})",
                             hint="`harness run --resume` picks the latest plan")
    path = plan_dir(experiment, plan_id) / STATE_FILENAME
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PlanStateError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})",
                             hint=NEW_PLAN_HINT) from e
    return Plan.from_dict(validate_state(raw, path, list(experiment.config.modes)), path)


class PlanLock:
    """An exclusive ``flock`` on the plan folder, so two ``harness run`` never drive one plan.

    The kernel drops a flock when its process dies, so a SIGKILLed run never leaves a stale lock
    behind; the pid written into the file only serves the error message.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILENAME
        self._fd: int | None = None

    def __enter__(self) -> "PlanLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PlanError(f"plan {self.path.parent.name} is being run by another harness process "
                            f"(pid {holder})", hint="wait for it to finish, or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def append_error(experiment: Experiment, plan: Plan, run: PlannedRun, run_dir: Path | None) -> None:
    """Add a failed run to errors.log: when, which run, why, and the end of its output."""
    path = plan_dir(experiment, plan.plan_id) / ERRORS_FILENAME
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"{stamp} {run.label} run {run.run_id}: {run.status}"
             + (f": {run.message}" if run.message else "")]
    if run_dir is not None:
        lines.append(f"  folder: {run_dir}")
        tail = _tail(run_dir / STDOUT_FILENAME, 10)
        lines.extend(f"  | {line}" for line in tail)
    text = "\n".join(lines) + "\n"

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(text)

    try:
        with_room(write, reserve_of(experiment, plan.plan_id))
    except OSError:
        pass  # errors.log is a convenience; state.json and results.json hold the record


def _tail(path: Path, n: int) -> list[str]:
    """The last lines of a run's log; nothing when the name is not a regular file (never via a link)."""
    try:
        return read_bytes(path, tail=8192).decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []
