"""Run one (mode, seed) as a local process: the same agent as in a container, no isolation.

For hosts without a Docker engine, and for quick iterations. Resource limits of the config
are not enforced here (the agent still measures what the process's cgroup allows); GPUs are
restricted through CUDA_VISIBLE_DEVICES, which is right for a process on the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable

from harness import env as envvars
from harness.backends.request import RunOutcome, RunRequest
from harness.config import CONFIG_FILENAME
from harness.errors import ContainerRunError
from harness.results.schema import STDOUT_FILENAME

STOP_TIMEOUT = 10  # seconds between the agent's SIGTERM and SIGKILL of its process group


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


def _stop(proc: subprocess.Popen, echo: Callable[[str], None] | None) -> None:
    """SIGTERM to the agent (it stops the script and records), SIGKILL to the group at the deadline."""
    if echo:
        echo(f"Stopping the run (up to {STOP_TIMEOUT} s; Ctrl-C again to kill it now)...")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_local(request: RunRequest) -> RunOutcome:
    """Run one (mode, seed) as a subprocess of this one and return its outcome.

    Raises:
        UsageError: for an unknown mode or a bad GPU request.
        ContainerRunError: when the agent cannot be started.
    """
    from harness.backends.settle import finish_run, prepare_run_dir

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
    interrupted = False
    try:
        # Own session: a terminal's Ctrl-C reaches us only, and we decide how the run ends.
        proc = subprocess.Popen(cmd, cwd=exp.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as e:
        raise ContainerRunError(f"cannot start the agent: {e}") from e
    if echo:
        echo(f"[{request.mode} seed={request.seed}] local process {proc.pid}, run {request.run_id}")
    assert proc.stdout is not None
    try:
        with open(run_dir / STDOUT_FILENAME, "ab") as log:
            try:
                for line in iter(proc.stdout.readline, b""):
                    log.write(line)
                    log.flush()
                    if echo:
                        echo(line.decode("utf-8", "replace").rstrip("\n"))
                proc.wait()
            except KeyboardInterrupt:
                interrupted = True
                _stop(proc, echo)
                rest = proc.stdout.read()
                if rest:
                    log.write(rest)
    finally:
        if proc.poll() is None:  # an exception of ours: leave nothing running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        proc.stdout.close()
    exit_code = proc.returncode
    if exit_code is not None and exit_code < 0:
        exit_code = 128 - exit_code  # same convention as a container's exit status
    return finish_run(request, run_dir, backend="local", exit_code=exit_code, interrupted=interrupted,
                      wall_time=time.time() - started)
