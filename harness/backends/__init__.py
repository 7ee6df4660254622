"""Run one (mode, seed) of an experiment: in a Docker container, or as a local process.

Both backends run the same agent (``python -m harness.agent``), which writes the run's
``results.json``; the backend records which backend it was and what the engine saw. This
package's API is what the plan uses: ``run_mode``, ``cleanup_plan``, ``stop_plan``.
"""

from __future__ import annotations

from harness.backends.request import RunOutcome, RunRequest, new_run_id
from harness.settings import RunOptions


def resolve_backend(name: str) -> tuple[str, str | None]:
    """Pick the backend: ``auto`` is docker when an engine answers, else local.

    Returns the backend name and a one-line note to show the user (or None).
    """
    if name != "auto":
        return name, None
    from harness.engine import engine_available

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


def cleanup_plan(plan_id: str) -> int:
    """Remove what a dead ``harness run`` of this plan left (containers, local agents); returns containers removed."""
    from harness.backends.cleanup import cleanup_plan as cleanup

    return cleanup(plan_id)


def stop_plan(plan_id: str) -> None:
    """Stop every run of this plan in flight (Ctrl-C of a parallel plan); each agent records what it has."""
    from harness.backends.cleanup import stop_plan as stop

    stop(plan_id)


__all__ = ["RunOptions", "RunOutcome", "RunRequest", "cleanup_plan", "new_run_id", "resolve_backend", "run_mode",
           "stop_plan", "validate_options"]
