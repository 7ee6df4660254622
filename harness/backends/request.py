"""What a backend is asked to do (``RunRequest``) and what it reports back (``RunOutcome``)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.experiment import Experiment
from harness.settings import RunOptions, RunSettings, resolve_settings


@dataclass
class RunRequest:
    """One run to make."""

    experiment: Experiment
    mode: str
    seed: int | None
    options: RunOptions = field(default_factory=RunOptions)
    run_id: str | None = None
    plan_id: str | None = None
    cpuset: str | None = None  # disjoint cpusets for parallel CPU runs
    gpu_ids: list[str] | None = None  # device ids assigned by a scheduler (plan, Ray)
    echo: Callable[[str], None] | None = print  # live log lines; None: quiet
    reserve: Path | None = None  # the plan's reserve file, given up to record a run on a full disk

    def settings(self) -> RunSettings:
        """The run's settings, flags over config (see ``harness.settings.resolve_settings``).

        Raises:
            UsageError: naming a bad flag.
        """
        return resolve_settings(self.experiment.config, self.options)


@dataclass
class RunOutcome:
    """What happened to a run. ``status`` is one of ``harness.results.schema.STATUSES``."""

    run_id: str
    run_dir: Path
    status: str
    exit_code: int | None
    backend: str
    wall_time: float
    message: str = ""  # e.g. "killed (SIGKILL)"
    hint: str | None = None
    results_incomplete: str | None = None  # why results.json is missing or has holes (a full disk)

    @property
    def ok(self) -> bool:
        return self.status == "completed"


def new_run_id(seed: int | None) -> str:
    """A sortable, unique run id: ``20240115T103000-s0-1a2b``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    seed_part = f"s{seed}" if seed is not None else "sNA"
    return f"{stamp}-{seed_part}-{secrets.token_hex(2)}"
