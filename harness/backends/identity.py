"""The fingerprint of a run about to start, handed to the agent (which records it) through its environment.

Computed here, on the host, from what the backend is about to run: the experiment folder the
image was built from (or the local process runs in), the command, the resolved config and run
settings, and the image id or the local interpreter. See :mod:`harness.fingerprint`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.backends.request import RunRequest
from harness.fingerprint import ENV_VAR, local_runtime, make_fingerprint, normalise_command, run_code, run_config


def for_run(experiment_dir: Path, config: dict[str, Any], mode: str, command: list[str],
            settings: dict[str, Any], runtime: dict[str, Any], workdir: str | None = None) -> dict[str, Any]:
    """The fingerprint of one run of ``mode`` about to start from ``experiment_dir``.

    ``config`` is the resolved config as JSON data; ``command`` the command the agent runs.
    """
    from harness.code import code_digests

    return make_fingerprint(command=normalise_command(command, experiment_dir, workdir),
                            code=run_code(code_digests(Path(experiment_dir))),
                            config=run_config(config, mode), settings=settings, runtime=runtime)


def run_settings(request: RunRequest, backend: str) -> dict[str, Any]:
    """The settings that shape a run (flags over config, resolved once in ``RunSettings``), as JSON data."""
    run = request.settings()
    return {"backend": backend, "cpus": run.cpus, "memory": run.memory, "shm_size": run.shm,
            "gpus": str(run.gpus), "network": run.network, "ipc": run.ipc, "timeout": run.timeout,
            "pids": run.pids}


def run_fingerprint(request: RunRequest, backend: str, command: list[str], *, image_id: str | None = None,
                    workdir: str | None = None) -> dict[str, Any]:
    """The fingerprint of this run (``image_id`` for Docker; the local interpreter otherwise).

    ``command`` is the agent's command line; what the agent runs follows its ``--``.
    """
    exp = request.experiment
    command = command[command.index("--") + 1:] if "--" in command else command
    runtime = {"image_id": image_id} if image_id else local_runtime()
    return for_run(exp.path, exp.config.model_dump(mode="json"), request.mode, command,
                   run_settings(request, backend), runtime, workdir=workdir)


def fingerprint_env(fingerprint: dict[str, Any]) -> dict[str, str]:
    """The environment entry that hands the fingerprint to the agent."""
    return {ENV_VAR: json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))}
