"""Many runs as one plan: seeds × modes, interleaved, resumable, continuing past failed seeds.

A plan is a list of (mode, seed) runs kept in ``results/plans/<plan_id>/state.json``, rewritten
atomically at every transition, so that a crash or a SIGKILL of ``harness run`` loses at most the
run in flight: ``harness run --resume`` skips what completed, re-runs what was cut short (after
removing its leftover container), and never runs twice a run whose results.json says completed.

Modes are interleaved per seed (baseline 0, optimization 0, baseline 1, ...) so that drift of the
machine over a night (thermal throttling, a neighbour's job) hits every mode alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from harness.backends import RunOptions, RunOutcome, RunRequest, new_run_id, run_mode, validate_options
from harness.errors import HarnessError, PlanError, UsageError
from harness.experiment import Experiment
from harness.results.build import rebuild_from_events
from harness.results.io import load_results_file, update_run, write_json_atomic
from harness.results.schema import EVENTS_FILENAME, RESULTS_FILENAME, STDOUT_FILENAME
from harness.progress import Progress
from harness.scheduling import BANDWIDTH_NOTE, Slot, plan_slots

STATE_FILENAME = "state.json"
ERRORS_FILENAME = "errors.log"
LOCK_FILENAME = "lock"
STATE_VERSION = 1
PLAN_STATUSES = ("pending", "running", "completed", "failed", "interrupted", "timeout", "oom_killed")
FAILED_STATUSES = ("failed", "timeout", "oom_killed")

Echo = Callable[[str], None]


@dataclass
class PlannedRun:
    """One (mode, seed) of a plan and what became of it."""

    mode: str
    seed: int | None
    status: str = "pending"
    run_id: str | None = None
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    message: str = ""
    wall_time: float | None = None
    backend: str | None = None
    node: str | None = None
    gpus: list[str] = field(default_factory=list)
    cpuset: str | None = None
    # Folders of earlier attempts that were cut short; kept on disk, left out by compare.
    previous_run_ids: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        seed = "no seed" if self.seed is None else f"seed {self.seed}"
        return f"{self.mode} {seed}"

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass
class Plan:
    """A plan's state.json, in memory."""

    plan_id: str
    experiment: str
    experiment_dir: str
    created: float
    modes: list[str]
    seeds: list[int]
    options: dict[str, Any]
    runs: list[PlannedRun]
    parallel: bool = False
    executor: str = "local"
    address: str | None = None
    fail_fast: bool = False
    state_version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> "Plan":
        """Rebuild a plan from state.json, refusing files this harness did not write."""
        try:
            if data.get("state_version", 0) > STATE_VERSION:
                raise PlanError(f"{path}: state_version {data['state_version']} is newer than this harness",
                                hint="upgrade harness")
            run_keys = {f.name for f in fields(PlannedRun)}
            runs = [PlannedRun(**{k: v for k, v in r.items() if k in run_keys}) for r in data["runs"]]
            plan_keys = {f.name for f in fields(cls)} - {"runs"}
            plan = cls(runs=runs, **{k: v for k, v in data.items() if k in plan_keys})
        except (KeyError, TypeError, AttributeError) as e:
            raise PlanError(f"{path}: not a harness plan state ({e.__class__.__name__}: {e})",
                            hint="delete that plan folder and start a new plan") from e
        for run in plan.runs:
            if run.status not in PLAN_STATUSES:
                raise PlanError(f"{path}: run {run.label} has unknown status {run.status!r}")
        return plan

    def run_options(self) -> RunOptions:
        known = {f.name for f in fields(RunOptions)}
        return RunOptions(**{k: v for k, v in self.options.items() if k in known})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for run in self.runs:
            out[run.status] = out.get(run.status, 0) + 1
        return out


# --------------------------------------------------------------------------- making a plan
def resolve_modes(experiment: Experiment, modes: list[str]) -> list[str]:
    """Expand 'all' and check names against the config, keeping the user's order.

    Raises:
        UsageError: for an unknown mode (listing the known ones) or when none is named.
    """
    known = list(experiment.config.modes)
    out: list[str] = []
    for mode in modes:
        names = known if mode == "all" else [mode]
        for name in names:
            if name not in experiment.config.modes:
                raise UsageError(f"unknown mode {name!r}; this experiment has: {', '.join(known)} (or 'all')")
            if name not in out:
                out.append(name)
    if not out:
        raise UsageError(f"name at least one mode: {', '.join(known)} (or 'all')")
    return out


def interleave(modes: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Seed-major order: every mode of seed 0, then every mode of seed 1, ..."""
    return [(mode, seed) for seed in seeds for mode in modes]


def new_plan_id(experiment: str, modes: list[str], seeds: list[int]) -> str:
    """Sortable timestamp plus a short hash of what the plan holds: ``20240115T103000-3f9a1c``."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    digest = hashlib.sha256(f"{experiment}|{modes}|{seeds}|{now!r}|{os.getpid()}".encode()).hexdigest()[:6]
    return f"{stamp}-{digest}"


def make_plan(experiment: Experiment, modes: list[str], seeds: list[int] | None = None,
              options: RunOptions | None = None, *, parallel: bool = False, executor: str = "local",
              address: str | None = None, fail_fast: bool = False) -> Plan:
    """Expand modes × seeds into an interleaved plan (not yet saved).

    Raises:
        UsageError: for unknown modes or bad seeds.
    """
    modes = resolve_modes(experiment, modes)
    seeds = list(experiment.config.seeds if seeds is None else seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise UsageError(f"seeds must be distinct integers >= 0 (got {seeds})")
    options = options or RunOptions()
    runs = [PlannedRun(mode=m, seed=s) for m, s in interleave(modes, seeds)]
    return Plan(plan_id=new_plan_id(experiment.name, modes, seeds), experiment=experiment.name,
                experiment_dir=str(experiment.path), created=time.time(), modes=modes, seeds=seeds,
                options=asdict(options), runs=runs, parallel=parallel, executor=executor, address=address,
                fail_fast=fail_fast)


# --------------------------------------------------------------------------- state on disk
def plans_dir(experiment: Experiment) -> Path:
    return experiment.results_dir / "plans"


def plan_dir(experiment: Experiment, plan_id: str) -> Path:
    return plans_dir(experiment) / plan_id


def save_plan(experiment: Experiment, plan: Plan) -> Path:
    """Rewrite state.json atomically: a reader (or a resume after SIGKILL) sees old or new, never half."""
    path = plan_dir(experiment, plan.plan_id) / STATE_FILENAME
    write_json_atomic(path, plan.to_dict())
    return path


def list_plans(experiment: Experiment) -> list[str]:
    """Plan ids of the experiment, oldest first (ids sort by time)."""
    root = plans_dir(experiment)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILENAME).is_file())


def load_plan(experiment: Experiment, plan_id: str = "latest") -> Plan:
    """Load a plan by id, or the newest one.

    Raises:
        PlanError: when there is no such plan or its state.json is unreadable.
    """
    ids = list_plans(experiment)
    if plan_id == "latest":
        if not ids:
            raise PlanError(f"no plan to resume in {plans_dir(experiment)}",
                            hint="start one with `harness run baseline optimization`")
        plan_id = ids[-1]
    elif plan_id not in ids:
        known = ", ".join(ids[-5:]) or "none"
        raise PlanError(f"no plan {plan_id!r} in {plans_dir(experiment)} (latest: {known})",
                        hint="`harness run --resume` picks the latest plan")
    path = plan_dir(experiment, plan_id) / STATE_FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"{path}: cannot be read ({e.__class__.__name__}: {e})") from e
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not a harness plan state")
    return Plan.from_dict(data, path)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _tail(path: Path, n: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


# --------------------------------------------------------------------------- resume
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
    says completed it counts as completed (never run twice what completed); otherwise its leftover
    container is removed, its folder is kept as an earlier attempt, and it runs again under a new
    run id. Failed runs run again too: resume means "finish the plan".
    """
    stale = [r.run_id for r in plan.runs if r.status in ("running", "interrupted") and r.run_id]
    if stale and plan.executor == "local":
        removed = remove_leftover_containers(plan.plan_id)
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
                stop_orphan_agent(run_dir_of(experiment, run.mode, run.run_id), run.run_id)
                seal_abandoned(run_dir_of(experiment, run.mode, run.run_id))
            run.previous_run_ids.append(run.run_id)
        run.status, run.run_id, run.message = "pending", None, ""
        todo.append(run)
    return todo


def stop_orphan_agent(run_dir: Path, run_id: str) -> bool:
    """Stop a local-backend agent that outlived a SIGKILLed ``harness run`` (it runs in its own session).

    The agent is found by its command line, which names the run id (unique), and cross-checked
    against the pid of its ``run_start`` event when there is one; a pid from inside a container,
    or a recycled one, belongs to someone else and is never signalled.
    """
    import psutil

    agents = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "harness.agent" in cmdline and run_id in cmdline:
            agents.append(proc)
    if not agents:
        return False
    family = []
    for agent in agents:
        try:
            family += [agent, *agent.children(recursive=True)]
        except psutil.Error:
            pass
    for p in family:
        try:
            p.terminate()  # the agent stops its script and records the run as interrupted
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(family, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return True


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


def remove_leftover_containers(plan_id: str) -> int:
    """Stop and remove containers labelled with this plan (left behind when harness was SIGKILLed).

    Returns how many were removed; 0 when no Docker engine answers (then there can be none).
    """
    from harness.errors import EngineUnavailableError

    try:
        from harness.backends.docker import clean_containers, list_containers

        leftovers = list_containers(include_stopped=True, plan_id=plan_id)
        return clean_containers(leftovers) if leftovers else 0
    except (EngineUnavailableError, ImportError):
        return 0


def stop_running(plan_id: str, runs: list[tuple[PlannedRun, Path]]) -> None:
    """Ctrl-C during a parallel plan: stop every run in flight, letting each agent record what it has.

    Only the main thread sees KeyboardInterrupt; runs driven by worker threads are stopped from
    outside: containers with ``docker stop`` (SIGTERM, then SIGKILL), local agents by their pid.
    """
    from harness.errors import EngineUnavailableError

    try:
        from harness.backends.docker import docker_client, list_containers

        infos = list_containers(plan_id=plan_id)
        if infos:
            client = docker_client()
            for info in infos:
                try:
                    client.containers.get(info.id).stop(timeout=10)
                except Exception:  # noqa: BLE001 - gone already, or the engine is going away: keep stopping others
                    pass
    except (EngineUnavailableError, ImportError):
        pass
    for run, run_dir in runs:
        if run.run_id:
            stop_orphan_agent(run_dir, run.run_id)


# --------------------------------------------------------------------------- running
class PlanRunner:
    """Drives a plan's pending runs through ``run_mode``, saving state at every transition."""

    def __init__(self, experiment: Experiment, plan: Plan, *, echo: Echo | None, fail_fast: bool,
                 slots: list[Slot], progress: Progress) -> None:
        self.experiment = experiment
        self.plan = plan
        self.echo = echo
        self.fail_fast = fail_fast
        self.slots = slots
        self.progress = progress
        self._lock = threading.Lock()
        self._stop = False
        self._interrupting = False  # set on Ctrl-C: runs stopped from outside count as interrupted

    def save(self) -> None:
        with self._lock:
            save_plan(self.experiment, self.plan)

    def run_all(self, todo: list[PlannedRun]) -> None:
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
                stop_running(self.plan.plan_id, [(r, run_dir_of(self.experiment, r.mode, r.run_id))
                                                 for r in self.plan.runs if r.status == "running" and r.run_id])
                for fut in running:
                    try:
                        fut.result(timeout=120)
                    except BaseException:  # noqa: BLE001 - each thread's own end is already recorded
                        pass
                raise

    def run_one(self, run: PlannedRun, slot: Slot) -> None:
        """Run one (mode, seed); a failed run is recorded, an interrupt or plan-level error re-raised."""
        run.run_id = new_run_id(run.seed)
        run.status, run.started, run.ended, run.message = "running", time.time(), None, ""
        run.attempts += 1
        run.cpuset, run.gpus = slot.cpuset, list(slot.gpu_ids or [])
        self.save()
        run_dir = run_dir_of(self.experiment, run.mode, run.run_id)
        self.progress.start_run(run, run_dir, slot)
        request = RunRequest(experiment=self.experiment, mode=run.mode, seed=run.seed,
                             options=self.plan.run_options(), run_id=run.run_id, plan_id=self.plan.plan_id,
                             cpuset=slot.cpuset, gpu_ids=slot.gpu_ids, echo=self.progress.log)
        try:
            outcome = run_mode(request)
        except KeyboardInterrupt:
            self._finish(run, "interrupted", "stopped by Ctrl-C")
            self._stop = True
            raise
        except HarnessError as e:
            # The run never really started (no engine, no GPU runtime): a plan-level problem.
            self._finish(run, "pending", f"not started: {e}")
            try:
                run_dir.rmdir()  # an empty folder the backend made before it gave up
            except OSError:
                pass
            if run_dir.exists():
                run.previous_run_ids.append(run.run_id)
            run.run_id = None
            self.save()
            self._stop = True
            raise
        except BaseException as e:
            self._finish(run, "interrupted", f"harness error: {e.__class__.__name__}: {e}")
            self._stop = True
            raise
        self.record(run, outcome)

    def record(self, run: PlannedRun, outcome: RunOutcome) -> None:
        status = outcome.status if outcome.status in PLAN_STATUSES else "failed"
        if status == "running":  # a backend should never return this; do not count it as done
            status = "failed"
        if self._interrupting and status != "completed":
            status = "interrupted"
        run.run_id = outcome.run_id
        run.wall_time, run.backend = outcome.wall_time, outcome.backend
        message = outcome.message or ("" if status == "completed" else f"exit code {outcome.exit_code}")
        if len(self.slots) > 1:
            _mark_parallel(outcome.run_dir, len(self.slots), run)
        self._finish(run, status, message)
        if status == "completed":
            from harness.compare.cache import warm

            warm(self.experiment.path, run.mode, outcome.run_dir)  # `harness compare` reads no big JSON
        if run.failed:
            append_error(self.experiment, self.plan, run, outcome.run_dir)
            if self.fail_fast:
                self._stop = True
        if status == "interrupted":
            self._stop = True
            raise KeyboardInterrupt

    def _finish(self, run: PlannedRun, status: str, message: str) -> None:
        run.status, run.ended, run.message = status, time.time(), message
        self.save()
        self.progress.end_run(run)


def _mark_parallel(run_dir: Path, at_once: int, run: PlannedRun) -> None:
    """Say in results.json that the run shared the machine, so a comparison can warn about it."""
    try:
        data = load_results_file(run_dir / RESULTS_FILENAME)
    except HarnessError:
        return  # no results.json (the agent never ran): state.json still records the slot
    update_run(run_dir, base=data, parallel={"runs_at_once": at_once, "cpuset": run.cpuset, "gpus": list(run.gpus),
                                             "note": BANDWIDTH_NOTE})


def execute(experiment: Experiment, modes: list[str], seeds: list[int] | None, options: RunOptions,
            dry_run: bool = False, resume: str | None = None, fail_fast: bool = False,
            parallel: bool = False, executor: str = "local", address: str | None = None,
            echo: Echo | None = print) -> list[PlannedRun]:
    """What ``harness run`` does: make (or resume) a plan, print or run it; returns the failed runs.

    Raises:
        UsageError: unknown modes, bad seeds, modes given with --resume, --address without ray.
        PlanError: no plan to resume, or the plan is being run by another process.
        MissingDependencyError: --executor ray without Ray installed.
        HarnessError: a plan-level problem (no engine, no GPU runtime); the plan can be resumed.
        KeyboardInterrupt: Ctrl-C reached a run; the plan is saved and can be resumed.
    """
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray (got {executor!r})")
    if address and executor != "ray":
        raise UsageError("--address is for --executor ray", hint="add --executor ray")
    validate_options(options)  # bad flags are input errors: refuse them before a plan is written
    if resume is not None:
        if modes or seeds is not None:
            raise UsageError("--resume continues a plan as it was made; drop the MODES and --seeds",
                             hint="to run something else, start a new plan without --resume")
        plan = load_plan(experiment, resume)
        plan.fail_fast = fail_fast  # this invocation decides, not the one that made the plan
        # Options given now (not left at their defaults) override the plan's, e.g. --timeout, --backend.
        defaults = asdict(RunOptions())
        plan.options.update({k: v for k, v in asdict(options).items() if v != defaults.get(k)})
        if parallel:
            plan.parallel = True
        if executor == "ray" or address:
            plan.executor, plan.address = executor, address or plan.address
    else:
        plan = make_plan(experiment, modes, seeds, options, parallel=parallel, executor=executor,
                         address=address, fail_fast=fail_fast)
    # Bad resource requests are input errors: refuse them before anything is written.
    if plan.executor == "ray":
        from harness.ray_executor import check_ray, plan_resources

        check_ray()
        plan_resources(experiment, plan)
    else:
        plan_slots(experiment, plan.run_options(), plan.parallel, len(plan.runs))
    if dry_run:
        _print_plan(experiment, plan, echo, resuming=resume is not None)
        return []
    return run_plan(experiment, plan, echo=echo, resuming=resume is not None)


def resume_plan(experiment: Experiment, plan_id: str = "latest", *, fail_fast: bool = False,
                parallel: bool = False, echo: Echo | None = print) -> list[PlannedRun]:
    """Continue a plan after a crash or Ctrl-C (``harness run --resume``); returns the failed runs.

    Raises:
        PlanError, HarnessError, KeyboardInterrupt: as :func:`execute`.
    """
    plan = load_plan(experiment, plan_id)
    return execute(experiment, [], None, plan.run_options(), resume=plan.plan_id, fail_fast=fail_fast,
                   parallel=parallel, executor=plan.executor, address=plan.address, echo=echo)


def run_plan(experiment: Experiment, plan: Plan, *, echo: Echo | None = print,
             resuming: bool = False) -> list[PlannedRun]:
    """Run a plan's unfinished runs under its lock; returns the runs that failed.

    Raises:
        PlanError: when another process holds the plan.
        HarnessError, KeyboardInterrupt: as :func:`execute`.
    """
    with PlanLock(plan_dir(experiment, plan.plan_id)):
        if resuming:
            # Reload under the lock: another process may have moved the plan on meanwhile.
            fresh = load_plan(experiment, plan.plan_id)
            fresh.fail_fast, fresh.parallel = plan.fail_fast, plan.parallel
            fresh.executor, fresh.address = plan.executor, plan.address
            fresh.options = plan.options
            plan = fresh
            todo = reconcile(experiment, plan, echo)
        else:
            todo = list(plan.runs)
        save_plan(experiment, plan)
        if not todo:
            if echo:
                echo(f"Plan {plan.plan_id}: all {len(plan.runs)} runs completed already; nothing to do.")
            return [r for r in plan.runs if r.failed]
        # On Ray the cluster places runs; local slots would only mislead.
        slots, notes = ([Slot()], []) if plan.executor == "ray" else \
            plan_slots(experiment, plan.run_options(), plan.parallel, len(todo))
        if echo:
            verb = "Resuming" if resuming else "Running"
            echo(f"{verb} plan {plan.plan_id}: {len(todo)} of {len(plan.runs)} runs "
                 f"({', '.join(plan.modes)} × seeds {','.join(map(str, plan.seeds))})"
                 + (f", {len(slots)} at a time" if len(slots) > 1 else ""))
            for note in notes:
                echo(note)
        with Progress(total=len(plan.runs), done=len(plan.runs) - len(todo), slots=len(slots),
                      echo=echo) as progress:
            if plan.executor == "ray":
                from harness.ray_executor import run_plan_on_ray

                run_plan_on_ray(experiment, plan, todo, progress=progress, save=lambda: save_plan(experiment, plan),
                                record_error=lambda run, d: append_error(experiment, plan, run, d),
                                resuming=resuming)
            else:
                runner = PlanRunner(experiment, plan, echo=echo, fail_fast=plan.fail_fast, slots=slots,
                                    progress=progress)
                runner.run_all(todo)
        failed = [r for r in plan.runs if r.failed]
        if echo:
            _print_summary(experiment, plan, failed, echo)
            if len(slots) > 1 and plan.executor == "local":
                echo(BANDWIDTH_NOTE)
        return failed


def _print_plan(experiment: Experiment, plan: Plan, echo: Echo | None, resuming: bool) -> None:
    if echo is None:
        return
    pending = [r for r in plan.runs if r.status != "completed"]
    slots, notes = ([Slot()], []) if plan.executor == "ray" else \
        plan_slots(experiment, plan.run_options(), plan.parallel, max(1, len(pending)))
    head = "Resume" if resuming else "Plan"
    echo(f"{head} {plan.plan_id} for {plan.experiment}: {len(plan.runs)} runs "
         f"({', '.join(plan.modes)} × seeds {','.join(map(str, plan.seeds))}), executor {plan.executor}, "
         f"backend {plan.options.get('backend', 'auto')}"
         + (f", {len(slots)} at a time" if len(slots) > 1 else ""))
    for i, run in enumerate(plan.runs, 1):
        state = "" if run.status == "pending" else f"  [{run.status}{', will run again' if run.status != 'completed' else ''}]"
        echo(f"  {i:>3}. {run.mode:<16} seed {run.seed}{state}")
    for note in notes:
        echo(note)
    echo("Dry run: nothing was run and no plan was saved.")


def _print_summary(experiment: Experiment, plan: Plan, failed: list[PlannedRun], echo: Echo) -> None:
    counts = plan.counts()
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    echo(f"Plan {plan.plan_id}: {', '.join(parts)} of {len(plan.runs)} runs.")
    for run in failed:
        echo(f"  failed: {run.label} ({run.run_id}): {run.status}" + (f": {run.message}" if run.message else ""))
    if failed:
        echo(f"Details: {plan_dir(experiment, plan.plan_id) / ERRORS_FILENAME}")
    pending = counts.get("pending", 0)
    if pending:
        echo(f"{pending} run(s) not run; continue with `harness run --resume {plan.plan_id}`.")
