"""Run one (mode, seed) in a container: create, start, stream logs, wait, remove.

The container runs the agent (``python -m harness.agent``) as the invoking user, with no
capabilities, no Docker socket, network ``none`` by default, CPU/memory/shm limits, this
run's results folder bind-mounted read-write and the data folder read-only. We remove the
container ourselves (no auto-remove: it races with reading logs and the exit code).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness import env as envvars
from harness.backends import RunOutcome, RunRequest
from harness.config import CONFIG_FILENAME, parse_gpus, parse_size
from harness.errors import ContainerRunError, EngineUnavailableError, GpuRuntimeError, HarnessError, UsageError
from harness.images import docker_client, ensure_experiment_image
from harness.agent import agent_command
from harness.results.schema import STDOUT_FILENAME

LABEL = "harness"  # every container we make carries harness=1: ps and clean touch nothing else
WORKDIR = "/workspace"
RESULTS_MOUNT = "/results"
HOME = "/tmp/home"
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL on Ctrl-C
GPU_HINT = ("install the NVIDIA Container Toolkit and register it with Docker "
            "(sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker), "
            "or run with --gpus none")


def engine_available(timeout: float = 3.0) -> bool:
    """Whether a Docker engine answers within ``timeout`` seconds."""
    try:
        client = docker_client(timeout=timeout)
    except EngineUnavailableError:
        return False
    client.close()
    return True


# --------------------------------------------------------------------------- container settings
def device_requests(gpus: str, gpu_ids: list[str] | None) -> list[Any]:
    """Docker DeviceRequests for a GPU request; scheduler-assigned ids win over the config's."""
    from docker.types import DeviceRequest

    if gpu_ids:
        return [DeviceRequest(device_ids=[str(g) for g in gpu_ids], capabilities=[["gpu"]])]
    if gpus == "none":
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if gpus.startswith("count:"):
        return [DeviceRequest(count=int(gpus[6:]), capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=gpus.split(","), capabilities=[["gpu"]])]


def container_settings(request: RunRequest, image: str, run_dir: Path, image_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for this run (pure: no engine needed).

    Raises:
        UsageError: when an override is not a valid size or GPU request.
    """
    exp, opts, cfg = request.experiment, request.options, request.experiment.config
    res = cfg.resources
    assert request.run_id is not None
    try:
        gpus = parse_gpus(opts.gpus if opts.gpus is not None else res.gpus)
        memory = opts.memory if opts.memory is not None else res.memory
        mem_bytes = parse_size(memory) if memory else None
        shm = parse_size(opts.shm_size if opts.shm_size is not None else res.shm_size)
    except ValueError as e:
        raise UsageError(f"bad resource option: {e}") from None
    cpus = opts.cpus if opts.cpus is not None else res.cpus
    if cpus is not None and cpus <= 0:
        raise UsageError(f"--cpus must be > 0 (got {cpus:g})")
    network = opts.network or cfg.network
    timeout = opts.timeout if opts.timeout is not None else cfg.timeout
    results_in = f"{RESULTS_MOUNT}/{request.run_id}"
    script = cfg.modes[request.mode]

    agent = agent_command(python="python3", script=script, mode=request.mode, results=results_in,
                          run_id=request.run_id, experiment=exp.name, interval=cfg.sampling_interval,
                          backend="docker", config=f"{WORKDIR}/{CONFIG_FILENAME}", seed=request.seed,
                          timeout=timeout)
    # HOME must be writable for the invoking uid, which has no passwd entry in the image.
    command = ["sh", "-c", 'mkdir -p "$HOME" && exec "$@"', "harness-run", *agent]

    volumes = {str(run_dir): {"bind": results_in, "mode": "rw"}}
    # The plan and the image travel in the environment (not yet as --plan-id / --image-id) while
    # framework images built from older harness code, whose agent refuses those flags, are about.
    env = {"HOME": HOME, envvars.IMAGE: image, "PYTHONUNBUFFERED": "1"}
    for name, value in ((envvars.IMAGE_ID, image_id), (envvars.PLAN_ID, request.plan_id)):
        if value:
            env[name] = value
    if exp.data_dir.is_dir():
        data_in = f"{WORKDIR}/{cfg.data_dir}"
        volumes[str(exp.data_dir)] = {"bind": data_in, "mode": "ro"}
        env[envvars.DATA_DIR] = data_in
    labels = {LABEL: "1", "harness.experiment": exp.name, "harness.mode": request.mode,
              "harness.run_id": request.run_id, "harness.seed": "" if request.seed is None else str(request.seed),
              "harness.plan_id": request.plan_id or "", "harness.results": str(run_dir)}
    settings: dict[str, Any] = dict(
        image=image, command=command, name=f"harness-{exp.name}-{request.mode}-{request.run_id}",
        user=f"{os.getuid()}:{os.getgid()}", environment=env, working_dir=WORKDIR, volumes=volumes,
        labels=labels, network_mode=network, init=True,
        # The host's name, not the container id: results say which machine ran them, and
        # runs on one machine must not look like runs on different hardware.
        hostname=socket.gethostname(), cap_drop=["ALL"], security_opt=["no-new-privileges"],
        device_requests=device_requests(gpus, request.gpu_ids), stop_signal="SIGTERM",
    )
    if opts.ipc == "host":
        settings["ipc_mode"] = "host"
    else:
        settings["shm_size"] = shm
    if cpus is not None:
        settings["nano_cpus"] = int(cpus * 1e9)
    if request.cpuset:
        settings["cpuset_cpus"] = request.cpuset
    if mem_bytes is not None:
        # memswap == mem: no swap to hide in, so exhausting the limit really OOM-kills.
        settings["mem_limit"] = mem_bytes
        settings["memswap_limit"] = mem_bytes
    return settings


# --------------------------------------------------------------------------- one run
def _is_gpu_driver_error(err: Exception) -> bool:
    text = str(err).lower()
    return ("could not select device driver" in text or "unknown or invalid runtime" in text
            or ("nvidia" in text and "runtime" in text))


def _discard_run_dir(run_dir: Path) -> None:
    """Remove a run folder whose container never started (it holds at most an empty log)."""
    for child in run_dir.iterdir():
        if child.is_file() and child.stat().st_size == 0:
            child.unlink()
    try:
        run_dir.rmdir()
    except OSError:
        pass


def _stream_logs(container: Any, log_path: Path, echo: Callable[[str], None] | None) -> None:
    """Copy the container's output to stdout.log (as it comes) and to ``echo`` (line by line)."""
    pending = b""
    with open(log_path, "ab") as log:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
            log.flush()
            if echo is None:
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                echo(line.decode("utf-8", "replace"))
        if echo is not None and pending:
            echo(pending.decode("utf-8", "replace"))


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

    from harness.backends.settle import finish_run, prepare_run_dir

    exp = request.experiment
    exp.script_for(request.mode)  # unknown mode -> UsageError before anything is built
    echo = request.echo
    image = ensure_experiment_image(exp, rebuild=request.options.rebuild, echo=echo or (lambda _: None))
    client = docker_client(timeout=None)
    run_dir = prepare_run_dir(request)
    image_id = client.images.get(image).id
    settings = container_settings(request, image, run_dir, image_id)
    log_path = run_dir / STDOUT_FILENAME
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
            _discard_run_dir(run_dir)  # nothing ran: leave no half-made run behind
            if settings["device_requests"] and _is_gpu_driver_error(e):
                raise GpuRuntimeError("GPUs were asked for, but this Docker engine has no NVIDIA runtime or CDI "
                                      "to give them to a container", hint=GPU_HINT) from e
            raise ContainerRunError(f"cannot start the container: {' '.join(str(e).split())}") from e
        if echo:
            echo(f"[{request.mode} seed={request.seed}] container {container.short_id} ({image}), run {request.run_id}")
        try:
            _stream_logs(container, log_path, echo)
        except KeyboardInterrupt:
            interrupted = True
            _stop(container, echo)
        try:
            result = _wait(container, request)
        except KeyboardInterrupt:
            interrupted = True
            _stop(container, echo)
            result = _wait(container, request)
        exit_code = result.get("StatusCode")
        try:
            container.reload()
            state = container.attrs.get("State", {})
        except APIError:
            state = {}
    except KeyboardInterrupt:
        interrupted = True
        if container is not None:
            _stop(container, echo)
    except APIError as e:
        raise ContainerRunError(f"the engine failed while supervising the run: {' '.join(str(e).split())}") from e
    finally:
        if container is not None:
            _remove(container)
    return finish_run(request, run_dir, backend="docker", exit_code=exit_code, interrupted=interrupted,
                      wall_time=time.time() - started, image=image, image_id=image_id,
                      engine_oom=bool(state.get("OOMKilled")))


def _wait(container: Any, request: RunRequest) -> dict[str, Any]:
    """Wait for the container; past the run's timeout plus a grace period, kill it."""
    import requests

    cfg, opts = request.experiment.config, request.options
    timeout = opts.timeout if opts.timeout is not None else cfg.timeout
    try:
        return container.wait(timeout=None if timeout is None else timeout + 60)
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        container.kill()
        return container.wait(timeout=30)


# --------------------------------------------------------------------------- ps / clean
@dataclass
class ContainerInfo:
    """One harness container, as ``harness ps`` shows it."""

    id: str
    name: str
    status: str
    experiment: str
    mode: str
    run_id: str
    plan_id: str
    image: str
    created: str


def list_containers(include_stopped: bool = False, *, plan_id: str | None = None,
                    run_id: str | None = None) -> list[ContainerInfo]:
    """harness containers (label ``harness=1``), optionally of one plan or run.

    Raises:
        EngineUnavailableError: when no engine answers.
    """
    client = docker_client()
    filters: dict[str, Any] = {"label": [f"{LABEL}=1"]}
    if plan_id:
        filters["label"].append(f"harness.plan_id={plan_id}")
    if run_id:
        filters["label"].append(f"harness.run_id={run_id}")
    infos = []
    for c in client.api.containers(all=include_stopped, filters=filters):
        labels = c.get("Labels") or {}
        infos.append(ContainerInfo(
            id=c["Id"][:12], name=(c.get("Names") or ["?"])[0].lstrip("/"), status=c.get("State", "?"),
            experiment=labels.get("harness.experiment", ""), mode=labels.get("harness.mode", ""),
            run_id=labels.get("harness.run_id", ""), plan_id=labels.get("harness.plan_id", ""),
            image=c.get("Image", ""), created=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.get("Created", 0)))))
    return infos


def print_containers(infos: list[ContainerInfo], echo: Callable[[str], None] = print) -> None:
    """A plain table (one line per container), or a sentence when there are none."""
    if not infos:
        echo("No harness containers.")
        return
    rows = [("CONTAINER", "STATUS", "EXPERIMENT", "MODE", "RUN", "PLAN", "CREATED")]
    rows += [(i.id, i.status, i.experiment, i.mode, i.run_id, i.plan_id or "-", i.created) for i in infos]
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def clean_containers(infos: list[ContainerInfo]) -> int:
    """Stop (if running) and remove these containers; return how many went.

    Only containers that still carry the harness label are touched, whatever ``infos`` says.
    """
    from docker.errors import APIError, NotFound

    client = docker_client()
    removed = 0
    for info in infos:
        try:
            container = client.containers.get(info.id)
        except NotFound:
            continue
        if container.labels.get(LABEL) != "1":
            continue
        try:
            container.remove(force=True)
            removed += 1
        except NotFound:
            continue
        except APIError as e:
            raise HarnessError(f"cannot remove container {info.id}: {e.explanation}") from e
    return removed


__all__ = ["ContainerInfo", "clean_containers", "container_settings", "engine_available", "list_containers",
           "print_containers", "run_in_docker"]
