"""The one small interface a plan's executors share: start a run, record how it ended.

``LocalExecutor`` (this machine, one run or parallel slots) and ``RayExecutor`` (a cluster) differ
only in how a run gets run; the bookkeeping around it (state.json at every transition, progress,
errors.log, fail-fast, the ``on_run_completed`` hook) is written once, here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from harness.experiment import Experiment
from harness.plan.model import Plan, PlannedRun
from harness.plan.progress import Progress
from harness.plan.slots import Slot
from harness.plan.state import append_error, save_plan

# Called with (experiment folder, mode, run folder) when a run completes; the CLI passes
# harness.compare.cache.warm, so that `harness compare` reads no big JSON.
RunCompleted = Callable[[Path, str, Path], object]


class Executor:
    """Runs a plan's pending runs, saving its state at every transition."""

    def __init__(self, experiment: Experiment, plan: Plan, progress: Progress, *,
                 on_run_completed: RunCompleted | None = None) -> None:
        self.experiment = experiment
        self.plan = plan
        self.progress = progress
        self.on_run_completed = on_run_completed
        self._lock = threading.Lock()
        self._stop = False

    def run(self, todo: list[PlannedRun]) -> None:
        """Run ``todo`` in plan order; a plan-level error or Ctrl-C is re-raised once state is saved."""
        raise NotImplementedError

    def save(self) -> None:
        with self._lock:
            save_plan(self.experiment, self.plan)

    def run_dir(self, run: PlannedRun) -> Path:
        assert run.run_id is not None
        return self.experiment.results_dir / run.mode / run.run_id

    def begin(self, run: PlannedRun, run_id: str, slot: Slot | None = None, *, remote: bool = False) -> None:
        """Mark ``run`` as running under a new run id (saved), and show it."""
        run.run_id = run_id
        run.status, run.started, run.ended, run.message = "running", time.time(), None, ""
        run.results_incomplete = None
        run.attempts += 1
        if slot is not None:
            run.cpuset, run.gpus = slot.cpuset, list(slot.gpu_ids or [])
        self.save()
        self.progress.start_run(run, Path("/nonexistent") if remote else self.run_dir(run), slot, remote=remote)

    def settle(self, run: PlannedRun, status: str, message: str) -> None:
        """Record the end of a run that has no outcome to file (interrupted, never started)."""
        run.status, run.ended, run.message = status, time.time(), message
        self.save()
        self.progress.end_run(run)

    def check_fingerprint(self, run: PlannedRun, run_dir: Path) -> None:
        """A run whose code or settings differ from the plan's first run of its mode is an error: say so."""
        from harness.plan.identity import check_run_fingerprint

        problem = check_run_fingerprint(self.plan.fingerprints, run.mode, run_dir,
                                        across_machines=self.plan.executor == "ray")
        if problem is None:
            self.save()  # the first fingerprint of a mode is kept in state.json
            return
        run.message = problem
        self.save()
        append_error(self.experiment, self.plan, run, None)
        self.progress.log(f"Error: {run.label} ({run.run_id}): {problem}")

    def finish(self, run: PlannedRun, status: str, message: str, run_dir: Path | None) -> None:
        """Record how a run ended: state, progress, the completed hook, errors.log and fail-fast."""
        self.settle(run, status, message)
        if status == "completed" and run_dir is not None:
            self.check_fingerprint(run, run_dir)
        if status == "completed" and run_dir is not None and self.on_run_completed is not None:
            self.on_run_completed(self.experiment.path, run.mode, run_dir)
        if run.failed:
            append_error(self.experiment, self.plan, run, run_dir)
            if self.plan.fail_fast:
                self._stop = True
