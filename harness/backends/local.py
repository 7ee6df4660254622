"""Run one (mode, seed) as a local process: the same agent as in a container, no isolation.

For hosts without a Docker engine, and for quick iterations. Resource limits of the config
are not enforced here (the agent still measures what the process's cgroup allows); GPUs are
restricted through CUDA_VISIBLE_DEVICES, which is right for a process on the host. The agent
runs in its own session, and nothing of the run outlives it (see ``localproc``); the script
gets a fresh ``HARNESS_SCRATCH_DIR``, removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import env as envvars
from harness.backends.request import RunOutcome, RunRequest
from harness.config import CONFIG_FILENAME
from harness.errors import ContainerRunError


def agent_command(request: RunRequest, results_dir: str, backend: str = "local") -> list[str]:
    """The agent's command line for this run, as a local process."""
    from harness.agent import agent_command as command

    from harness.modes import program_argv

    exp, run = request.experiment, request.settings()
    assert request.run_id is not None
    spec = exp.mode_spec(request.mode)
    return command(python=sys.executable, command=program_argv(spec, sys.executable), mode=request.mode,
                   results=results_dir, run_id=request.run_id, experiment=exp.name,
                   interval=run.sampling_interval, backend=backend, config=str(exp.path / CONFIG_FILENAME),
                   seed=request.seed, timeout=run.timeout, plan_id=request.plan_id, instrument=spec.instrument)


def run_local(request: RunRequest) -> RunOutcome:
    """Run one (mode, seed) as a subprocess of this one and return its outcome.

    Raises:
        UsageError: for an unknown mode or a bad GPU request.
        ContainerRunError: when the agent cannot be started.
    """
    from harness.backends.localproc import supervise
    from harness.backends.settle import finish_run, open_run_log, prepare_run_dir

    exp = request.experiment
    spec = exp.mode_spec(request.mode)
    run_dir = prepare_run_dir(request)
    cmd = agent_command(request, str(run_dir))
    env = dict(os.environ, PYTHONUNBUFFERED="1", **spec.env)
    visible = request.settings().gpus.cuda_visible_devices(request.gpu_ids)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    if exp.data_dir.is_dir():
        env[envvars.DATA_DIR] = str(exp.data_dir)
    echo = request.echo
    started = time.time()
    log = open_run_log(request, run_dir)  # before the run starts: see harness.nofollow
    scratch = tempfile.mkdtemp(prefix=f"harness-scratch-{request.run_id}-")
    env[envvars.SCRATCH_DIR] = scratch
    try:
        try:
            # Own session: a terminal's Ctrl-C reaches us only, and we decide how the run ends.
            proc = subprocess.Popen(cmd, cwd=exp.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as e:
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
    return finish_run(request, run_dir, backend="local", exit_code=exit_code, interrupted=interrupted,
                      wall_time=time.time() - started, log_error=log.error)
