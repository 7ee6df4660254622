"""What ``harness run`` does: make (or resume) a plan, then print it or run it under its lock.

A plan is a list of (mode, seed) runs kept in ``results/plans/<plan_id>/state.json`` (see
``state``); ``harness run --resume`` continues one (see ``resume``). The runs go through a
``LocalExecutor`` or a ``RayExecutor``; what a completed run triggers (the CLI passes
``harness.compare.cache.warm``) comes in as ``on_run_completed``, so the plan never imports compare.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Callable, Iterator

from harness.backends import limits_warning, resolve_options, run_image
from harness.errors import UsageError
from harness.experiment import Experiment
from harness.modes import ModeSpec
from harness.plan.executor import Executor, RunCompleted
from harness.plan.guard import exclusive_plan
from harness.plan.local import LocalExecutor
from harness.plan.model import Plan, PlanResult, make_plan, resolve_modes
from harness.plan.progress import Progress
from harness.plan.resume import reconcile
from harness.plan.sequential import Decide, SequentialRequest, drive, new_state, next_seeds
from harness.plan.slots import Slot, plan_slots
from harness.plan.state import ERRORS_FILENAME, PlanLock, load_plan, plan_dir, reserve_of, save_plan
from harness.overrides import check_runnable
from harness.settings import RunOptions, RunSettings, describe_settings, resolve_settings

Echo = Callable[[str], None]


def execute(experiment: Experiment, modes: list[str], seeds: list[int] | None, options: RunOptions,
            dry_run: bool = False, resume: str | None = None, fail_fast: bool = False,
            parallel: bool = False, executor: str = "local", address: str | None = None,
            echo: Echo | None = print, on_run_completed: RunCompleted | None = None,
            sequential: SequentialRequest | None = None, decide: Decide | None = None,
            parallel_plans: bool = False) -> PlanResult:
    """What ``harness run`` does: make (or resume) a plan, and run it unless ``dry_run``.

    ``sequential`` (``--until-confident``) makes a sequential plan of two modes, which adds seed
    pairs until ``decide`` (the CLI passes compare's) says the verdict is resolved (plan/sequential.py).

    ``echo`` gets the live lines (what runs now, progress, the runs' output); the result is
    rendered by ``harness.plan.report.render_plan_result``.

    Raises:
        UsageError: unknown modes, bad seeds, modes given with --resume, --address without ray.
        PlanError: no plan to resume, the plan or (PlanRunningError) another plan of the experiment runs.
        MissingDependencyError: --executor ray without Ray installed.
        HarnessError: a plan-level problem (no engine, no GPU runtime); the plan can be resumed.
        KeyboardInterrupt: Ctrl-C reached a run; the plan is saved and can be resumed.
    """
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray (got {executor!r})")
    if address and executor != "ray":
        raise UsageError("--address is for --executor ray", hint="add --executor ray")
    resolve_settings(experiment.config, options)  # bad flags are input errors: refuse them before a plan is written
    if resume is not None:
        if modes or seeds is not None or sequential is not None:
            raise UsageError("--resume continues a plan as it was made; drop the MODES, --seeds and "
                             "--until-confident", hint="to run something else, start a new plan without --resume")
        experiment, plan = _resumed_plan(experiment, resume, options, fail_fast=fail_fast, parallel=parallel,
                                         executor=executor, address=address)
    elif sequential is not None:
        plan = _sequential_plan(experiment, modes, seeds, options, sequential, parallel, executor, fail_fast)
    else:
        plan = make_plan(experiment, modes, seeds, options, parallel=parallel, executor=executor,
                         address=address, fail_fast=fail_fast)
    # Bad resource requests, commands, more CPUs than the host has: refused before anything is written or built.
    check_runnable(experiment, plan.options, executor=plan.executor)
    settings = resolve_settings(experiment.config, plan.run_options())
    experiment.check_modes(plan.modes)
    if plan.executor == "ray":
        from harness.plan.ray import check_ray, task_resources

        check_ray()
        task_resources(settings)
    elif not dry_run:
        plan_slots(resolved_options(experiment, plan)[1], plan.parallel, len(plan.runs))
    if dry_run:
        return _dry_run(experiment, plan, resuming=resume is not None)
    return run_plan(experiment, plan, echo=echo, resuming=resume is not None, on_run_completed=on_run_completed,
                    decide=decide, parallel_plans=parallel_plans)


def _resumed_plan(experiment: Experiment, resume: str, options: RunOptions, *, fail_fast: bool, parallel: bool,
                  executor: str, address: str | None) -> tuple[Experiment, Plan]:
    """The plan to resume (validated by its state model), with what this invocation overrides."""
    plan = load_plan(experiment, resume)
    experiment = experiment.with_one_off_modes(
        {name: ModeSpec.model_validate(spec) for name, spec in plan.one_off_modes.items()})
    plan.fail_fast = fail_fast  # this invocation decides, not the one that made the plan
    # Options given now (not left at their defaults) override the plan's, e.g. --timeout, --backend.
    defaults = asdict(RunOptions())
    plan.options.update({k: v for k, v in asdict(options).items() if v != defaults.get(k)})
    if parallel:
        plan.parallel = True
    if executor == "ray" or address:
        plan.executor, plan.address = executor, address or plan.address
    return experiment, plan


def _sequential_plan(experiment: Experiment, modes: list[str], seeds: list[int] | None, options: RunOptions,
                     request: SequentialRequest, parallel: bool, executor: str, fail_fast: bool) -> Plan:
    """A new sequential plan: the first look's seed pairs (the config's seeds first) and its state.

    Raises:
        UsageError: with --seeds, --parallel or Ray; unless two modes; for a bad budget.
    """
    if seeds is not None:
        raise UsageError("--until-confident chooses the seeds itself (the config's first, then 0, 1, ...); "
                         "drop --seeds")
    if parallel or executor != "local":
        raise UsageError("--until-confident runs one pair at a time on this machine; drop --parallel/--executor",
                         hint="each look decides whether the next pair runs at all")
    resolved = resolve_modes(experiment, modes)
    state = new_state(request, resolved)
    first = state["design"]["first_look"]
    plan = make_plan(experiment, resolved, next_seeds(list(experiment.config.seeds)[:first], first), options,
                     fail_fast=fail_fast)
    plan.sequential = state
    return plan


def resolved_options(experiment: Experiment, plan: Plan) -> tuple[RunOptions, RunSettings, list[str]]:
    """The plan's options with ``auto`` (backend, GPUs) resolved once for this invocation, the settings
    they give, and the notices to show once. On Ray each node resolves for itself.

    Raises:
        UsageError, PlanError: a GPU request this machine cannot meet.
        EngineUnavailableError: --backend docker, and no engine answers.
    """
    options = plan.run_options()
    notes: list[str] = []
    if plan.executor != "ray":
        options, notes = resolve_options(options, resolve_settings(experiment.config, options).gpus)
    return options, resolve_settings(experiment.config, options), notes


def _limits_notes(plan: Plan, settings: RunSettings, backend: str) -> list[str]:
    """The one line naming what local runs will not enforce (none on Ray, where each node decides)."""
    warning = None if plan.executor == "ray" else limits_warning(settings, backend)
    return [warning] if warning else []


def resume_plan(experiment: Experiment, plan_id: str = "latest", *, fail_fast: bool = False,
                parallel: bool = False, echo: Echo | None = print,
                on_run_completed: RunCompleted | None = None, decide: Decide | None = None) -> PlanResult:
    """Continue a plan after a crash or Ctrl-C (``harness run --resume``).

    Raises:
        PlanError, HarnessError, KeyboardInterrupt: as :func:`execute`.
    """
    plan = load_plan(experiment, plan_id)
    return execute(experiment, [], None, plan.run_options(), resume=plan.plan_id, fail_fast=fail_fast,
                   parallel=parallel, executor=plan.executor, address=plan.address, echo=echo,
                   on_run_completed=on_run_completed, decide=decide)


@contextlib.contextmanager
def _reserved(experiment: Experiment, plan_id: str) -> Iterator[None]:
    """Keep the plan's reserve file while it runs (see harness.diskspace); none is left behind."""
    reserve = reserve_of(experiment, plan_id)
    reserve.ensure()
    try:
        yield
    finally:
        reserve.release()


def run_plan(experiment: Experiment, plan: Plan, *, echo: Echo | None = print, resuming: bool = False,
             on_run_completed: RunCompleted | None = None, decide: Decide | None = None,
             parallel_plans: bool = False) -> PlanResult:
    """Run a plan's unfinished runs under its lock.

    Raises:
        PlanError: when another process holds the plan.
        PlanRunningError: when another plan of the experiment runs and ``parallel_plans`` is False.
        HarnessError, KeyboardInterrupt: as :func:`execute`.
    """
    with exclusive_plan(plan_dir(experiment, plan.plan_id).parent, plan.plan_id,
                        PlanLock(plan_dir(experiment, plan.plan_id)), allow_parallel=parallel_plans), \
            _reserved(experiment, plan.plan_id):
        # Reloaded under the lock when resuming.
        plan, todo = _reloaded(experiment, plan, echo) if resuming else (plan, list(plan.runs))
        save_plan(experiment, plan)
        going = plan.sequential is not None and plan.sequential.get("decision") is None
        if going and decide is None:
            raise UsageError("this plan is sequential (--until-confident) and needs the decision rule to go on",
                             hint="continue it with `harness run --resume`")
        if not todo and not going:
            return PlanResult(plan=plan, failed=[r for r in plan.runs if r.failed],
                              errors_log=plan_dir(experiment, plan.plan_id) / ERRORS_FILENAME, resuming=resuming,
                              nothing_to_do=True)
        options, settings, notices = resolved_options(experiment, plan)
        # On Ray the cluster places runs; local slots would only mislead.
        slots, notes = ([Slot()], []) if plan.executor == "ray" else plan_slots(settings, plan.parallel, len(todo))
        if echo:
            for notice in notices:  # once per plan, before anything runs: not once per run
                echo(notice)
            verb = "Resuming" if resuming else "Running"
            echo(f"{verb} plan {plan.plan_id}: {len(todo)} of {len(plan.runs)} runs "
                 f"({', '.join(plan.modes)} × seeds {','.join(map(str, plan.seeds))})"
                 + (f", {len(slots)} at a time" if len(slots) > 1 else ""))
            for note in notes + _limits_notes(plan, settings, options.backend):
                echo(note)
        total = max(len(plan.runs), 2 * plan.sequential["design"]["max_seeds"]) if going else len(plan.runs)
        with Progress(total=total, done=len(plan.runs) - len(todo), slots=len(slots),
                      echo=echo) as progress:
            runner: Executor
            if plan.executor == "ray":
                from harness.plan.ray import RayExecutor

                runner = RayExecutor(experiment, plan, progress, settings=settings, resuming=resuming,
                                     on_run_completed=on_run_completed)
            else:
                runner = LocalExecutor(experiment, plan, progress, slots=slots, options=options,
                                       on_run_completed=on_run_completed)
            if going and decide is not None:
                drive(experiment.path, plan, run_pending=lambda runs: _run_some(runner, runs), save=runner.save,
                      decide=decide, echo=progress.log if echo else None)
            else:
                runner.run(todo)
        return PlanResult(plan=plan, failed=[r for r in plan.runs if r.failed],
                          errors_log=plan_dir(experiment, plan.plan_id) / ERRORS_FILENAME, resuming=resuming,
                          slots=len(slots))


def _reloaded(experiment: Experiment, plan: Plan, echo: Echo | None) -> tuple[Plan, list]:
    """The plan as saved (another process may have moved it on meanwhile), this invocation's choices kept,
    and its runs still to do."""
    fresh = load_plan(experiment, plan.plan_id)
    fresh.fail_fast, fresh.parallel = plan.fail_fast, plan.parallel
    fresh.executor, fresh.address = plan.executor, plan.address
    fresh.options = plan.options
    return fresh, reconcile(experiment, fresh, echo)


def _run_some(runner: Executor, runs: list) -> bool:
    """Run ``runs``; False when the plan must stop (Ctrl-C is re-raised; --fail-fast stops it)."""
    runner.run(runs)
    return not runner._stop


def _dry_run(experiment: Experiment, plan: Plan, resuming: bool) -> PlanResult:
    """The plan as it would run, each run with its resolved settings (nothing is run, no plan is saved)."""
    options, settings, notices = resolved_options(experiment, plan)
    pending = [r for r in plan.runs if r.status != "completed"]
    slots, notes = ([Slot()], []) if plan.executor == "ray" else \
        plan_slots(settings, plan.parallel, max(1, len(pending)))
    image = run_image(experiment, options.backend) if plan.executor != "ray" else "chosen on each node"
    described = {}
    for k, run in enumerate(pending):
        slot = slots[k % len(slots)]
        described[id(run)] = describe_settings(settings, backend=options.backend if plan.executor != "ray" else
                                               f"{options.backend} (on each node)", image=image,
                                               cpuset=slot.cpuset, gpu_ids=slot.gpu_ids)
    return PlanResult(plan=plan, failed=[], errors_log=plan_dir(experiment, plan.plan_id) / ERRORS_FILENAME,
                      dry_run=True, resuming=resuming, slots=len(slots), notes=notices + notes,
                      run_settings=[described.get(id(r), "") for r in plan.runs])
