"""The Docker engine: the client, what its errors mean to a user, and the containers harness made.

Every container harness creates carries the label ``harness=1`` (plus ``harness.experiment``,
``harness.mode``, ``harness.run_id``, ``harness.seed``, ``harness.plan_id``, ``harness.results``);
``harness ps`` / ``harness clean`` and a plan's cleanup find them by it and touch nothing else.
Engine exceptions become ``HarnessError``s here, with one wording, where they enter our code.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import ContainerRunError, EngineUnavailableError, GpuRuntimeError, HarnessError

if TYPE_CHECKING:
    import docker

LABEL = "harness"  # every container we make carries harness=1: ps and clean touch nothing else
ENGINE_HINT = "start the engine: sudo systemctl start docker (or run dockerd)"
GPU_HINT = ("install the NVIDIA Container Toolkit and register it with Docker "
            "(sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker), "
            "or run with --gpus none")
GPU_RUNTIME_FIX = ("install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker "
                   "&& sudo systemctl restart docker`; or run with --backend local")


def docker_client(timeout: float | None = 60) -> "docker.DockerClient":
    """A client for the engine the environment points at (DOCKER_HOST or the local socket).

    ``timeout`` None means no read timeout: log streams and builds may be silent for long.

    Raises:
        EngineUnavailableError: when no engine answers.
    """
    import docker

    try:
        # Ping with a short timeout even when the caller wants none: a hung engine must not hang us.
        client = docker.from_env(timeout=min(timeout, 10) if timeout is not None else 10)
        client.ping()
        client.api.timeout = timeout
    except Exception as e:  # DockerException, or requests' ConnectionError and friends
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise EngineUnavailableError(f"the Docker engine at {where} does not answer ({_engine_reason(e)})",
                                     hint=_engine_hint(e)) from e
    return client


def engine_available(timeout: float = 3.0) -> bool:
    """Whether a Docker engine answers within ``timeout`` seconds."""
    try:
        client = docker_client(timeout=timeout)
    except EngineUnavailableError:
        return False
    client.close()
    return True


def _engine_reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    for needle, reason in (("Permission denied", "permission denied"), ("Connection refused", "connection refused"),
                           ("No such file or directory", "no socket"), ("timed out", "timed out"),
                           ("Read timed out", "timed out"), ("Name or service not known", "unknown host")):
        if needle in text:
            return reason
    return text[:120]


def _engine_hint(err: Exception) -> str:
    if "Permission denied" in str(err):
        return "add yourself to the docker group (sudo usermod -aG docker $USER, then log in again)"
    return ENGINE_HINT


def gpu_runtime(info: dict[str, Any]) -> str | None:
    """How this engine hands GPUs to a container (its ``docker info``), or None when it cannot."""
    import shutil

    runtimes = sorted((info.get("Runtimes") or {}).keys())
    if "nvidia" in runtimes:
        return f"NVIDIA runtime registered (runtimes: {', '.join(runtimes)})"
    cdi = info.get("CDISpecDirs") or []
    if cdi:
        return f"CDI enabled ({', '.join(cdi)})"
    if shutil.which("nvidia-container-runtime-hook"):
        return "nvidia-container-runtime-hook found (legacy GPU support)"
    return None


def no_gpu_runtime_notice(count: int) -> str:
    """The one line a user sees when ``gpus: auto`` finds GPUs that the engine cannot hand over."""
    return (f"Note: {count} GPU(s) seen by NVML, but this Docker engine has no NVIDIA runtime or CDI, so the runs "
            f"use the CPU. fix: {GPU_RUNTIME_FIX}")


def engine_message(err: Exception) -> str:
    """An engine error as one line: its explanation when it has one, whitespace folded."""
    return " ".join(str(getattr(err, "explanation", None) or err).split())


def _is_gpu_driver_error(err: Exception) -> bool:
    text = str(err).lower()
    return ("could not select device driver" in text or "unknown or invalid runtime" in text
            or ("nvidia" in text and "runtime" in text))


def engine_error(err: Exception, doing: str, *, gpus_requested: bool = False) -> HarnessError:
    """The ``HarnessError`` for an engine error met while ``doing`` something to a container.

    A missing GPU runtime when GPUs were asked for is a ``GpuRuntimeError`` with the fix;
    anything else a ``ContainerRunError`` saying what we were doing.
    """
    if gpus_requested and _is_gpu_driver_error(err):
        return GpuRuntimeError("GPUs were asked for, but this Docker engine has no NVIDIA runtime or CDI "
                               "to give them to a container", hint=GPU_HINT)
    return ContainerRunError(f"{doing}: {' '.join(str(err).split())}")


# --------------------------------------------------------------------------- harness containers
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


def render_containers(infos: list[ContainerInfo]) -> str:
    """A plain table (one line per container), or a sentence when there are none."""
    if not infos:
        return "No harness containers."
    rows = [("CONTAINER", "STATUS", "EXPERIMENT", "MODE", "RUN", "PLAN", "CREATED")]
    rows += [(i.id, i.status, i.experiment, i.mode, i.run_id, i.plan_id or "-", i.created) for i in infos]
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


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
