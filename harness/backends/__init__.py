"""Run one (mode, seed) of an experiment: in a Docker container, or as a local process.

Both backends run the same agent (``python -m harness.agent``), which writes the run's
``results.json``; the backend records which backend it was and what the engine saw.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.experiment import Experiment


@dataclass
class RunOptions:
    """Overrides from the command line; ``None`` means: take the experiment config's value."""

    backend: str = "auto"  # auto | docker | local
    gpus: str | None = None
    cpus: float | None = None
    memory: str | None = None
    shm_size: str | None = None
    network: str | None = None
    ipc: str = "private"
    timeout: float | None = None
    rebuild: bool = False


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


@dataclass
class RunOutcome:
    """What happened to a run. ``status`` is one of results.STATUSES."""

    run_id: str
    run_dir: Path
    status: str
    exit_code: int | None
    backend: str
    wall_time: float
    message: str = ""  # e.g. "killed (SIGKILL)"
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


def validate_options(options: RunOptions) -> None:
    """Check command-line overrides before anything is written or built.

    The config's own values were validated when it was loaded, so a bad value here
    always comes from a flag, and the message names it.

    Raises:
        UsageError: naming the flag and what it accepts.
    """
    from harness.config import parse_gpus, parse_size
    from harness.errors import UsageError

    checks = (("--gpus", options.gpus, parse_gpus), ("--memory", options.memory, parse_size),
              ("--shm-size", options.shm_size, parse_size))
    for flag, value, parse in checks:
        if value is None:
            continue
        try:
            parse(value)
        except ValueError as e:
            raise UsageError(f"{flag}: {e}") from None
    if options.cpus is not None and options.cpus <= 0:
        raise UsageError(f"--cpus: must be > 0 (got {options.cpus:g})")
    if options.timeout is not None and options.timeout <= 0:
        raise UsageError(f"--timeout: must be > 0 seconds (got {options.timeout:g})")


def new_run_id(seed: int | None) -> str:
    """A sortable, unique run id: ``20240115T103000-s0-1a2b``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    seed_part = f"s{seed}" if seed is not None else "sNA"
    return f"{stamp}-{seed_part}-{secrets.token_hex(2)}"


def resolve_backend(name: str) -> tuple[str, str | None]:
    """Pick the backend: ``auto`` is docker when an engine answers, else local.

    Returns the backend name and a one-line note to show the user (or None).
    """
    if name != "auto":
        return name, None
    from harness.backends.docker import engine_available

    if engine_available():
        return "docker", None
    return "local", "No Docker engine answered; running as a local process (backend: local)."


def run_mode(request: RunRequest) -> RunOutcome:
    """Run one (mode, seed) and return its outcome; the run folder holds results.json.

    Raises:
        HarnessError: subclasses when the run cannot be started (no engine, no GPU runtime, bad config).
    """
    backend, note = resolve_backend(request.options.backend)
    if note and request.echo:
        request.echo(note)
    if request.run_id is None:
        request.run_id = new_run_id(request.seed)
    if backend == "docker":
        from harness.backends.docker import run_in_docker

        return run_in_docker(request)
    from harness.backends.local import run_local

    return run_local(request)
