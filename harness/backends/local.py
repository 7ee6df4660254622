"""Run one (mode, seed) as a local process: the same agent as in a container, measured on its own.

For hosts without a Docker engine (notebooks, clusters), and for quick iterations. Where it may,
the run gets a cgroup of its own with the CPU quota, memory limit and CPU set applied
(backends/local_limits.py); elsewhere the agent measures its process tree and a CPU count
becomes CPU affinity. GPUs are restricted through CUDA_VISIBLE_DEVICES. What is enforced and
what is not is recorded in the run's results. The agent runs in its own session, and nothing of
the run outlives it (see ``localproc``); the script gets a fresh ``HARNESS_SCRATCH_DIR``,
removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness import env as envvars
from harness.backends.identity import fingerprint_env, run_fingerprint
from harness.backends.request import RunOutcome, RunRequest
from harness.config import CONFIG_FILENAME
from harness.errors import ContainerRunError
from harness.monitor.process_tree import PROCESS_TREE

if TYPE_CHECKING:
    from harness.backends.local_limits import Isolation


def agent_command(request: RunRequest, results_dir: str, backend: str = "local",
                  cpu_source: str = PROCESS_TREE) -> list[str]:
    """The agent's command line for this run, as a local process."""
    from harness.agent import agent_command as command

    from harness.modes import program_argv

    exp, run = request.experiment, request.settings()
    assert request.run_id is not None
    spec = exp.mode_spec(request.mode)
    return command(python=sys.executable, command=program_argv(spec, sys.executable), mode=request.mode,
                   results=results_dir, run_id=request.run_id, experiment=exp.name,
                   interval=run.sampling_interval, backend=backend, config=str(exp.path / CONFIG_FILENAME),
                   seed=request.seed, timeout=run.timeout, plan_id=request.plan_id, instrument=spec.instrument,
                   cpu_source=cpu_source)


def cgroup_allowed() -> bool:
    """Whether local runs may try a cgroup of their own (``HARNESS_LOCAL_CGROUP=0`` turns it off)."""
    return os.environ.get(envvars.LOCAL_CGROUP, "1") != "0"


def isolation_for(request: RunRequest) -> "Isolation":
    """This run's cgroup (or affinity), limits applied; the caller must ``close()`` it."""
    from harness.backends.local_limits import Wanted, isolate

    assert request.run_id is not None
    wanted = Wanted.from_settings(request.settings(), request.cpuset)
    return isolate(request.run_id, wanted, allow_cgroup=cgroup_allowed())


def run_local(request: RunRequest) -> RunOutcome:
    """Run one (mode, seed) as a subprocess of this one and return its outcome.

    Raises:
        UsageError: for an unknown mode or a bad GPU request.
        ContainerRunError: when the agent cannot be started.
    """
    from harness.backends.settle import finish_run, prepare_run_dir
    from harness.code import code_record

    exp = request.experiment
    spec = exp.mode_spec(request.mode)
    run_dir = prepare_run_dir(request)
    fingerprint = run_fingerprint(request, "local", agent_command(request, str(run_dir)))
    env = dict(os.environ, PYTHONUNBUFFERED="1", **spec.env, **fingerprint_env(fingerprint))
    visible = request.settings().gpus.cuda_visible_devices(request.gpu_ids)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    if exp.data_dir.is_dir():
        env[envvars.DATA_DIR] = str(exp.data_dir)
    code = code_record(exp.path)
    iso = isolation_for(request)
    started = time.time()
    try:
        cmd = agent_command(request, str(run_dir), cpu_source=iso.cpu_source)
        exit_code, interrupted, log_error = _run_agent(request, cmd, env, run_dir, iso.preexec())
    finally:
        left = iso.close()
    record = {**iso.record(), "code": code}
    if left:
        record["cgroup_left"] = left
    return finish_run(request, run_dir, backend="local", exit_code=exit_code, interrupted=interrupted,
                      wall_time=time.time() - started, log_error=log_error, record=record)


def _run_agent(request: RunRequest, cmd: list[str], env: dict[str, str], run_dir: Path,
               preexec: Callable[[], None] | None) -> tuple[int | None, bool, str | None]:
    """Start the agent, stream its output to the log (and echo); ``(exit code, interrupted, log error)``."""
    from harness.backends.localproc import supervise
    from harness.backends.settle import open_run_log

    echo = request.echo
    log = open_run_log(request, run_dir)  # before the run starts: see harness.nofollow
    scratch = tempfile.mkdtemp(prefix=f"harness-scratch-{request.run_id}-")
    env[envvars.SCRATCH_DIR] = scratch
    try:
        try:
            # Own session: a terminal's Ctrl-C reaches us only, and we decide how the run ends.
            # preexec enters the run's cgroup / sets its affinity before the agent executes anything.
            proc = subprocess.Popen(cmd, cwd=request.experiment.path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
        except (OSError, subprocess.SubprocessError) as e:
            raise ContainerRunError(f"cannot start the agent: {e}") from e
        if echo:
            echo(f"[{request.mode} seed={request.seed}] local process {proc.pid}, run {request.run_id}")
        interrupted = supervise(proc, log.write, echo)
    finally:
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    exit_code = proc.returncode
    if exit_code is not None and exit_code < 0:
        exit_code = 128 - exit_code  # same convention as a container's exit status
    return exit_code, interrupted, log.error
