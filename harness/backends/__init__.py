"""Run one (mode, seed) of an experiment: in a Docker container, or as a local process.

Both backends run the same agent (``python -m harness.agent``), which writes the run's
``results.json``; the backend records which backend it was and what the engine saw. This
package's API is what the plan uses: ``run_mode``, ``cleanup_plan``, ``stop_plan``.
"""

from __future__ import annotations

from dataclasses import replace

from harness.backends.request import RunOutcome, RunRequest, new_run_id
from harness.experiment import Experiment
from harness.settings import GpuRequest, RunOptions, RunSettings


def resolve_backend(name: str) -> tuple[str, str | None]:
    """Pick the backend: ``auto`` is docker when an engine answers, else local.

    Returns the backend name and, when ``auto`` fell back to local, the notice to show the user
    once: no container isolation, why, and the fix.
    """
    if name != "auto":
        return name, None
    from harness.engine import docker_client
    from harness.errors import EngineUnavailableError

    try:
        docker_client(timeout=3.0).close()
    except EngineUnavailableError as e:
        return "local", (f"No Docker engine: running as local processes, with no container isolation, because {e}; "
                         f"fix: {e.hint}, or choose --backend local.")
    return "docker", None


def resolve_gpus(request: GpuRequest, backend: str) -> tuple[GpuRequest, str | None]:
    """What ``gpus: auto`` becomes for ``backend`` on this host (see ``GpuRequest.resolve``).

    Returns the request (others unchanged) and the notice to show once when GPUs are there but the
    Docker engine cannot hand them over.
    """
    if not request.is_auto:
        return request, None
    from harness.host_gpus import host_gpu_ids

    detected = host_gpu_ids()
    runtime = False
    if backend == "docker" and detected:
        from harness.engine import docker_client, gpu_runtime

        client = docker_client(timeout=10)
        try:
            runtime = gpu_runtime(client.info()) is not None
        finally:
            client.close()
    resolved, unusable = request.resolve(detected, backend, runtime)
    if not unusable:
        return resolved, None
    from harness.engine import no_gpu_runtime_notice

    return resolved, no_gpu_runtime_notice(len(detected))


def resolve_options(options: RunOptions, gpus: GpuRequest) -> tuple[RunOptions, list[str]]:
    """``options`` with ``auto`` backend and GPUs resolved for this host, and the notices to show once.

    ``gpus`` is the request the settings hold (the flag, else the config's).

    Raises:
        EngineUnavailableError: when the Docker backend is chosen and its engine stopped answering.
    """
    backend, backend_note = resolve_backend(options.backend)
    resolved, gpu_note = resolve_gpus(gpus, backend)
    notes = [n for n in (backend_note, gpu_note) if n]
    return replace(options, backend=backend, gpus=resolved.spec), notes


def run_image(experiment: Experiment, backend: str) -> str:
    """What a run of ``experiment`` would run in on ``backend``: the image's tag, or "local process".

    Raises:
        EngineUnavailableError: for the Docker backend when no engine answers.
    """
    if backend != "docker":
        return "none (local process)"
    from harness.images import planned_experiment_image

    return planned_experiment_image(experiment)


def run_mode(request: RunRequest) -> RunOutcome:
    """Run one (mode, seed) and return its outcome; the run folder holds results.json.

    A plan resolves ``auto`` (backend, GPUs) once and passes the result; a request that still says
    ``auto`` is resolved here, its notices echoed.

    Raises:
        HarnessError: subclasses when the run cannot be started (no engine, no GPU runtime, bad config).
    """
    if request.options.backend == "auto" or request.settings().gpus.is_auto:
        request.options, notes = resolve_options(request.options, request.settings().gpus)
        for note in notes:
            if request.echo:
                request.echo(note)
    backend = request.options.backend
    if request.run_id is None:
        request.run_id = new_run_id(request.seed)
    if backend == "docker":
        from harness.backends.docker import run_in_docker

        return run_in_docker(request)
    from harness.backends.local import run_local

    return run_local(request)


def limits_warning(settings: RunSettings, backend: str) -> str | None:
    """One line naming every setting a local run will not enforce (None for Docker, or when all are).

    Found by making and removing a cgroup, as the runs will; said once, before a plan starts.
    """
    if resolve_backend(backend)[0] != "local":
        return None
    from harness.backends.local import cgroup_allowed
    from harness.backends.local_limits import Wanted, probe, warning_line

    return warning_line(probe(Wanted.from_settings(settings), allow_cgroup=cgroup_allowed()))


def cleanup_plan(plan_id: str) -> int:
    """Remove what a dead ``harness run`` of this plan left (containers, local agents); returns containers removed."""
    from harness.backends.cleanup import cleanup_plan as cleanup

    return cleanup(plan_id)


def stop_plan(plan_id: str) -> None:
    """Stop every run of this plan in flight (Ctrl-C of a parallel plan); each agent records what it has."""
    from harness.backends.cleanup import stop_plan as stop

    stop(plan_id)


__all__ = ["RunOptions", "RunOutcome", "RunRequest", "cleanup_plan", "limits_warning", "new_run_id", "resolve_backend",
           "resolve_gpus", "resolve_options", "run_image", "run_mode", "stop_plan", "validate_options"]
