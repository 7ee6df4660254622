"""Run one (mode, seed) in a container: create, start, stream logs, wait, remove.

The container runs the agent (``python -m harness.agent``) as the invoking user, with no
capabilities, no Docker socket, network ``none`` by default, CPU/memory/shm limits, this
run's results folder bind-mounted read-write and the data folder read-only. We remove the
container ourselves (no auto-remove: it races with reading logs and the exit code).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from harness import env as envvars
from harness.backends.request import RunOutcome, RunRequest
from harness.config import CONFIG_FILENAME
from harness.engine import LABEL, docker_client, engine_error
from harness.images import ensure_experiment_image
from harness.agent import agent_command
from harness.autoinstrument import enabled as autoinstrument_enabled
from harness.modes import program_argv
from harness.backends.runlog import RunLog

WORKDIR = "/workspace"
RESULTS_MOUNT = "/results"
HOME = "/tmp/home"
SCRATCH = "/tmp/scratch"  # HARNESS_SCRATCH_DIR: writable, in the container's own layer, gone with it
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL on Ctrl-C
TIMEOUT_GRACE = 60  # seconds past the run's timeout before harness kills a container the agent did not end


# --------------------------------------------------------------------------- container settings
def _mounts_and_env(request: RunRequest, image: str, image_id: str | None, run_dir: Path,
                    results_in: str) -> tuple[list[Any], dict[str, str]]:
    """Bind mounts (this run's folder rw, the data ro) and the container's environment.

    ``Mount`` objects, not ``host:container:mode`` strings: a ``:`` in a path stays a path.
    """
    from docker.types import Mount

    exp = request.experiment
    mounts = [Mount(target=results_in, source=str(run_dir), type="bind", read_only=False)]
    # The plan and the image travel in the environment (not yet as --plan-id / --image-id) while
    # framework images built from older harness code, whose agent refuses those flags, are about.
    env = {"HOME": HOME, envvars.IMAGE: image, "PYTHONUNBUFFERED": "1", envvars.SCRATCH_DIR: SCRATCH}
    for name, value in ((envvars.IMAGE_ID, image_id), (envvars.PLAN_ID, request.plan_id)):
        if value:
            env[name] = value
    if exp.data_dir.is_dir():
        data_in = f"{WORKDIR}/{exp.config.data_dir}"
        mounts.append(Mount(target=data_in, source=str(exp.data_dir), type="bind", read_only=True))
        env[envvars.DATA_DIR] = data_in
    return mounts, env


def _fingerprint_env(request: RunRequest, agent: list[str], image_id: str | None) -> dict[str, str]:
    """What the run is (harness.fingerprint), for the agent to record; none without an image id."""
    from harness.backends.identity import fingerprint_env, run_fingerprint

    if not image_id:
        return {}
    return fingerprint_env(run_fingerprint(request, "docker", agent, image_id=image_id, workdir=WORKDIR))


def _labels(request: RunRequest, run_dir: Path) -> dict[str, str]:
    assert request.run_id is not None
    return {LABEL: "1", "harness.experiment": request.experiment.name, "harness.mode": request.mode,
            "harness.run_id": request.run_id, "harness.seed": "" if request.seed is None else str(request.seed),
            "harness.plan_id": request.plan_id or "", "harness.results": str(run_dir)}


def container_settings(request: RunRequest, image: str, run_dir: Path, image_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for this run (pure: no engine needed).

    Raises:
        UsageError: when an override is not a valid size or GPU request.
    """
    exp, run = request.experiment, request.settings()
    assert request.run_id is not None
    results_in = f"{RESULTS_MOUNT}/{request.run_id}"
    spec = exp.mode_spec(request.mode)
    agent = agent_command(python="python3", command=program_argv(spec, "python3"), mode=request.mode,
                          results=results_in, run_id=request.run_id, experiment=exp.name,
                          interval=run.sampling_interval, backend="docker", config=f"{WORKDIR}/{CONFIG_FILENAME}",
                          seed=request.seed, timeout=run.timeout,
                          instrument=spec.instrument and autoinstrument_enabled())
    mounts, env = _mounts_and_env(request, image, image_id, run_dir, results_in)
    env = {**spec.env, **env}  # the mode's variables; never over harness's own
    env.update(_fingerprint_env(request, agent, image_id))
    # HOME and the scratch folder must be writable for the invoking uid, which has no passwd
    # entry in the image (and /workspace belongs to root).
    prelude = f'mkdir -p "$HOME" "${envvars.SCRATCH_DIR}" && exec "$@"'
    settings: dict[str, Any] = dict(
        image=image, command=["sh", "-c", prelude, "harness-run", *agent],
        name=f"harness-{exp.name}-{request.mode}-{request.run_id}",
        user=f"{os.getuid()}:{os.getgid()}", environment=env, working_dir=WORKDIR, mounts=mounts,
        labels=_labels(request, run_dir), network_mode=run.network, init=True,
        # The host's name, not the container id: results say which machine ran them, and
        # runs on one machine must not look like runs on different hardware.
        hostname=socket.gethostname(), cap_drop=["ALL"], security_opt=["no-new-privileges"],
        device_requests=run.gpus.device_requests(request.gpu_ids), stop_signal="SIGTERM",
    )
    if run.ipc == "host":
        settings["ipc_mode"] = "host"
    else:
        settings["shm_size"] = run.shm
    if run.pids is not None:
        settings["pids_limit"] = run.pids  # a fork bomb stops at the limit, not at the host's
    if run.cpus is not None:
        settings["nano_cpus"] = int(run.cpus * 1e9)
    if request.cpuset:
        settings["cpuset_cpus"] = request.cpuset
    if run.memory is not None:
        # memswap == mem: no swap to hide in, so exhausting the limit really OOM-kills.
        settings["mem_limit"] = run.memory
        settings["memswap_limit"] = run.memory
    return settings


# --------------------------------------------------------------------------- one run
def _discard_run_dir(run_dir: Path) -> None:
    """Remove a run folder whose container never started (it holds at most an empty log)."""
    for child in run_dir.iterdir():
        if child.is_file() and child.stat().st_size == 0:
            child.unlink()
    try:
        run_dir.rmdir()
    except OSError:
        pass


def _stream_logs(container: Any, log: RunLog) -> None:
    """Copy the container's output to stdout.log (as it comes) and to the terminal (line by line)."""
    from docker.errors import NotFound

    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
    except NotFound:
        pass  # removed from outside (docker rm -f): the wait says how it ended


def _stop(container: Any, echo: Callable[[str], None] | None) -> None:
    """SIGTERM (the agent records what it has), SIGKILL after STOP_TIMEOUT or a second Ctrl-C."""
    from docker.errors import APIError, NotFound

    if echo:
        echo(f"Stopping the container (up to {STOP_TIMEOUT} s; Ctrl-C again to kill it now)...")
    try:
        container.stop(timeout=STOP_TIMEOUT)
    except KeyboardInterrupt:
        try:
            container.kill()
        except (APIError, NotFound):
            pass
    except (APIError, NotFound):
        pass


def _remove(container: Any) -> None:
    from docker.errors import APIError, NotFound

    for _ in range(3):
        try:
            container.remove(force=True)
            return
        except NotFound:
            return
        except APIError as e:
            if "already in progress" in str(e):
                return
            time.sleep(0.5)
        except KeyboardInterrupt:
            continue  # never leave the container behind because of an impatient Ctrl-C


def run_in_docker(request: RunRequest) -> RunOutcome:
    """Run one (mode, seed) in a fresh container and return its outcome.

    Raises:
        EngineUnavailableError: when no engine answers.
        GpuRuntimeError: when GPUs are asked for and the engine cannot give them.
        ImageBuildError: when the experiment image cannot be built.
        ContainerRunError: when the container cannot be created or supervised.
    """
    from docker.errors import APIError, ImageNotFound

    from harness.backends.local_limits import Wanted, container_limits
    from harness.backends.settle import finish_run, open_run_log, prepare_run_dir
    from harness.code import code_record
    from harness.monitor.process_tree import CONTAINER_CGROUP

    exp = request.experiment
    exp.mode_spec(request.mode)  # unknown mode -> UsageError before anything is built
    echo = request.echo
    image = ensure_experiment_image(exp, rebuild=request.options.rebuild, echo=echo or (lambda _: None))
    record = {"cpu_source": CONTAINER_CGROUP, "code": code_record(exp.path),
              "limits": container_limits(Wanted.from_settings(request.settings(), request.cpuset))}
    client = docker_client(timeout=None)
    run_dir = prepare_run_dir(request)
    image_id = client.images.get(image).id
    settings = container_settings(request, image, run_dir, image_id)
    log = open_run_log(request, run_dir)  # before the container starts: see harness.nofollow
    container = None
    interrupted = False
    started = time.time()
    exit_code: int | None = None
    state: dict[str, Any] = {}
    try:
        try:
            container = client.containers.create(**settings)
            container.start()
        except (APIError, ImageNotFound) as e:
            log.close()
            _discard_run_dir(run_dir)  # nothing ran: leave no half-made run behind
            raise engine_error(e, "cannot start the container",
                               gpus_requested=bool(settings["device_requests"])) from e
        if echo:
            echo(f"[{request.mode} seed={request.seed}] container {container.short_id} ({image}), run {request.run_id}")
        exit_code, interrupted, state = _supervise(container, request, log)
    except KeyboardInterrupt:
        interrupted = True
        if container is not None:
            _stop(container, echo)
    except APIError as e:
        raise engine_error(e, "the engine failed while supervising the run") from e
    finally:
        log.close()
        if container is not None:
            _remove(container)
    return finish_run(request, run_dir, backend="docker", exit_code=exit_code, interrupted=interrupted,
                      wall_time=time.time() - started, image=image, image_id=image_id,
                      engine_oom=bool(state.get("OOMKilled")), log_error=log.error, record=record)


def _supervise(container: Any, request: RunRequest, log: RunLog) -> tuple[int | None, bool, dict[str, Any]]:
    """Stream the logs and wait for the end (Ctrl-C stops the container); (exit code, interrupted, state).

    A container removed from outside (``docker rm -f``) ends with no exit code: a failed run.
    """
    from docker.errors import APIError, NotFound

    interrupted = False
    timeout = request.settings().timeout
    # The agent enforces the timeout; this backstop also ends a run whose agent hangs before it can.
    watchdog = threading.Timer(timeout + TIMEOUT_GRACE, _kill_quietly, args=(container,)) if timeout else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    try:
        _stream_logs(container, log)
    except KeyboardInterrupt:
        interrupted = True
        _stop(container, request.echo)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    try:
        result = _wait(container, request)
    except KeyboardInterrupt:
        interrupted = True
        _stop(container, request.echo)
        result = _wait(container, request)
    except NotFound:
        return None, interrupted, {}
    try:
        container.reload()
        state = container.attrs.get("State", {})
    except APIError:
        state = {}
    return result.get("StatusCode"), interrupted, state


def _kill_quietly(container: Any) -> None:
    try:
        container.kill()
    except Exception:  # noqa: BLE001 - gone already: nothing to stop
        pass


def _wait(container: Any, request: RunRequest) -> dict[str, Any]:
    """Wait for the container; past the run's timeout plus a grace period, kill it."""
    import requests

    timeout = request.settings().timeout
    try:
        return container.wait(timeout=None if timeout is None else timeout + TIMEOUT_GRACE)
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        container.kill()
        return container.wait(timeout=30)


__all__ = ["container_settings", "run_in_docker"]
