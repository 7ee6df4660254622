"""Continuing a plan after a crash or Ctrl-C: never run twice what completed, keep what was measured.

``harness run --resume`` skips what completed, re-runs what was cut short (after its backend
removed what the dead process left running), and gives each attempt that was cut short a
results.json that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness.backends import cleanup_plan
from harness.errors import HarnessError
from harness.experiment import Experiment
from harness.plan.model import Plan, PlannedRun
from harness.results.build import rebuild_from_events
from harness.results.io import load_results_file, update_run
from harness.results.schema import EVENTS_FILENAME, RESULTS_FILENAME

Echo = Callable[[str], None]


def run_dir_of(experiment: Experiment, mode: str, run_id: str) -> Path:
    return experiment.results_dir / mode / run_id


def _completed_on_disk(run_dir: Path) -> dict[str, Any] | None:
    """The run's results.json when it says completed (the run finished though harness died)."""
    try:
        data = load_results_file(run_dir / RESULTS_FILENAME)
    except HarnessError:
        return None
    return data if data["run"]["status"] == "completed" else None


def reconcile(experiment: Experiment, plan: Plan, echo: Echo | None = None) -> list[PlannedRun]:
    """Make a loaded plan safe to continue; returns the runs that will run (again).

    A run left 'running' or 'interrupted' had its harness process die or stop: if its results.json
    says completed it counts as completed (never run twice what completed); otherwise what it left
    running is stopped, its folder is kept as an earlier attempt, and it runs again under a new
    run id. Failed runs run again too: resume means "finish the plan".
    """
    stale = [r.run_id for r in plan.runs if r.status in ("running", "interrupted") and r.run_id]
    if stale and plan.executor == "local":
        removed = cleanup_plan(plan.plan_id)
        if removed and echo:
            echo(f"Removed {removed} leftover container(s) of plan {plan.plan_id}.")
    todo: list[PlannedRun] = []
    for run in plan.runs:
        if run.status == "completed":
            continue
        if run.status in ("running", "interrupted") and run.run_id:
            data = _completed_on_disk(run_dir_of(experiment, run.mode, run.run_id))
            if data is not None:
                run.status = "completed"
                run.wall_time = data["run"].get("wall_time")
                run.ended = data["run"].get("ended_at") or run.ended
                run.message = "completed before harness stopped"
                continue
        if run.run_id and run_dir_of(experiment, run.mode, run.run_id).exists():
            if run.status in ("running", "interrupted"):
                seal_abandoned(run_dir_of(experiment, run.mode, run.run_id))
            run.previous_run_ids.append(run.run_id)
        run.status, run.run_id, run.message = "pending", None, ""
        todo.append(run)
    return todo


def seal_abandoned(run_dir: Path) -> None:
    """Give an attempt cut short by a crash a results.json saying so, built from what it measured.

    Nothing measured is thrown away, and compare (which takes completed runs) leaves it out.
    """
    if (run_dir / RESULTS_FILENAME).exists() or not (run_dir / EVENTS_FILENAME).exists():
        return
    try:
        data = rebuild_from_events(run_dir)
    except (HarnessError, OSError, ValueError, KeyError):
        return
    if data.get("run", {}).get("status") == "completed":
        return
    update_run(run_dir, base=data, status="interrupted",
               error=data["run"].get("error") or "harness stopped before this run ended; the plan ran it again")
