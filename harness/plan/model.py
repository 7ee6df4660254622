"""A plan in memory: modes × seeds as ``PlannedRun``s, interleaved, and what became of each.

Modes are interleaved per seed (baseline 0, optimization 0, baseline 1, ...) so that drift of the
machine over a night (thermal throttling, a neighbour's job) hits every mode alike.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.errors import PlanError, UsageError
from harness.experiment import Experiment
from harness.settings import RunOptions

STATE_VERSION = 1
PLAN_STATUSES = ("pending", "running", "completed", "failed", "interrupted", "timeout", "oom_killed")
FAILED_STATUSES = ("failed", "timeout", "oom_killed")


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
    results_incomplete: str | None = None  # why the run's results are missing or have holes (full disk)

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
    # A sequential plan's design, looks and decision (plan/sequential.py); None for a fixed plan.
    sequential: dict[str, Any] | None = None
    # `harness run --mode NAME='CMD'`: what those modes ran, so that --resume runs the same
    one_off_modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # mode -> the fingerprint of the plan's first completed run of it (a later one that differs is an error)
    fingerprints: dict[str, Any] = field(default_factory=dict)

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
    one_off = {m: experiment.one_off_modes[m].model_dump() for m in modes if m in experiment.one_off_modes}
    return Plan(plan_id=new_plan_id(experiment.name, modes, seeds), experiment=experiment.name,
                experiment_dir=str(experiment.path), created=time.time(), modes=modes, seeds=seeds,
                options=asdict(options), runs=runs, parallel=parallel, executor=executor, address=address,
                fail_fast=fail_fast, one_off_modes=one_off)


@dataclass
class PlanResult:
    """What ``execute`` did: the plan as it stands now, the runs that failed, and what to tell about it.

    ``harness.plan.report.render_plan_result`` turns it into the lines the CLI prints.
    """

    plan: Plan
    failed: list[PlannedRun]
    errors_log: Path
    dry_run: bool = False
    resuming: bool = False
    nothing_to_do: bool = False
    slots: int = 1  # runs at a time
    notes: list[str] = field(default_factory=list)  # notices, where parallel runs go (dry run)
    run_settings: list[str] = field(default_factory=list)  # each run's resolved settings (dry run), in plan order
