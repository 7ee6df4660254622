"""Running a plan on this machine: one run after another, or ``--parallel`` slots (GPUs, cpusets)."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from harness.backends import RunOutcome, RunRequest, new_run_id, run_mode, stop_plan
from harness.errors import HarnessError
from harness.experiment import Experiment
from harness.plan.executor import Executor, RunCompleted
from harness.plan.model import PLAN_STATUSES, Plan, PlannedRun
from harness.plan.progress import Progress
from harness.plan.slots import BANDWIDTH_NOTE, Slot
from harness.plan.state import reserve_of
from harness.results.io import load_results_file, update_run
from harness.results.schema import RESULTS_FILENAME
from harness.settings import RunOptions


class LocalExecutor(Executor):
    """Drives a plan's pending runs through ``run_mode`` on this machine."""

    def __init__(self, experiment: Experiment, plan: Plan, progress: Progress, *, slots: list[Slot],
                 options: RunOptions | None = None, on_run_completed: RunCompleted | None = None) -> None:
        super().__init__(experiment, plan, progress, on_run_completed=on_run_completed)
        self.slots = slots
        self.options = options or plan.run_options()  # auto (backend, GPUs) resolved once for the plan
        self._interrupting = False  # set on Ctrl-C: runs stopped from outside count as interrupted

    def run(self, todo: list[PlannedRun]) -> None:
        if len(self.slots) <= 1:
            slot = self.slots[0] if self.slots else Slot()
            for run in todo:
                if self._stop:
                    break
                self.run_one(run, slot)
        else:
            self._run_parallel(todo)

    def _run_parallel(self, todo: list[PlannedRun]) -> None:
        free = list(self.slots)
        queue = list(todo)
        running: dict[Future[None], Slot] = {}
        with ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix="harness-run") as pool:
            try:
                while queue or running:
                    while queue and free and not self._stop:
                        slot = free.pop(0)
                        running[pool.submit(self.run_one, queue.pop(0), slot)] = slot
                    if not running:
                        break
                    # A timeout keeps the main thread responsive to Ctrl-C.
                    done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    for fut in done:
                        free.append(running.pop(fut))
                        fut.result()  # a plan-level error or an interrupt stops the plan
            except BaseException:
                self._stop = self._interrupting = True
                # Only this thread saw the Ctrl-C; stop the other runs so their threads return.
                stop_plan(self.plan.plan_id)
                for fut in running:
                    try:
                        fut.result(timeout=120)
                    except BaseException:  # noqa: BLE001 - each thread's own end is already recorded
                        pass
                raise

    def run_one(self, run: PlannedRun, slot: Slot) -> None:
        """Run one (mode, seed); a failed run is recorded, an interrupt or plan-level error re-raised."""
        self.begin(run, new_run_id(run.seed), slot)
        run_dir = self.run_dir(run)
        reserve = reserve_of(self.experiment, self.plan.plan_id)
        reserve.ensure()  # given up by an earlier run on a full disk: take it back where there is room
        request = RunRequest(experiment=self.experiment, mode=run.mode, seed=run.seed,
                             options=replace(self.options), run_id=run.run_id, plan_id=self.plan.plan_id,
                             cpuset=slot.cpuset, gpu_ids=slot.gpu_ids, echo=self.progress.log, reserve=reserve.path)
        try:
            outcome = run_mode(request)
        except KeyboardInterrupt:
            self.settle(run, "interrupted", "stopped by Ctrl-C")
            self._stop = True
            raise
        except HarnessError as e:
            self._not_started(run, run_dir, e)
            raise
        except BaseException as e:
            self.settle(run, "interrupted", f"harness error: {e.__class__.__name__}: {e}")
            self._stop = True
            raise
        self.record(run, outcome)

    def _not_started(self, run: PlannedRun, run_dir: Path, error: HarnessError) -> None:
        """The run never really started (no engine, no GPU runtime): a plan-level problem."""
        self.settle(run, "pending", f"not started: {error}")
        try:
            run_dir.rmdir()  # an empty folder the backend made before it gave up
        except OSError:
            pass
        if run_dir.exists():
            assert run.run_id is not None
            run.previous_run_ids.append(run.run_id)
        run.run_id = None
        self.save()
        self._stop = True

    def record(self, run: PlannedRun, outcome: RunOutcome) -> None:
        status = outcome.status if outcome.status in PLAN_STATUSES else "failed"
        if status == "running":  # a backend should never return this; do not count it as done
            status = "failed"
        if self._interrupting and status != "completed":
            status = "interrupted"
        run.run_id = outcome.run_id
        run.wall_time, run.backend = outcome.wall_time, outcome.backend
        run.results_incomplete = outcome.results_incomplete
        message = outcome.message or ("" if status == "completed" else f"exit code {outcome.exit_code}")
        if len(self.slots) > 1:
            _mark_parallel(outcome.run_dir, len(self.slots), run)
        self.finish(run, status, message, outcome.run_dir)
        if status == "interrupted":
            self._stop = True
            raise KeyboardInterrupt


def _mark_parallel(run_dir: Path, at_once: int, run: PlannedRun) -> None:
    """Say in results.json that the run shared the machine, so a comparison can warn about it."""
    try:
        data = load_results_file(run_dir / RESULTS_FILENAME)
    except HarnessError:
        return  # no results.json (the agent never ran): state.json still records the slot
    update_run(run_dir, base=data, parallel={"runs_at_once": at_once, "cpuset": run.cpuset, "gpus": list(run.gpus),
                                             "note": BANDWIDTH_NOTE})
