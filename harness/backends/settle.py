"""What both backends do around a run: make its folder, then settle its status and results.json.

The agent's ``results.json`` is authoritative for what the script did (it was told the plan id
and the image on its command line); the backend adds what only it knows (which backend, that the
user pressed Ctrl-C, that the engine saw an OOM kill, that the agent itself died and wrote
nothing). The status rules are ``harness.results.status``; the write is ``update_run``.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

from harness import __version__
from harness.backends.request import RunOutcome, RunRequest
from harness.backends.runlog import RunLog
from harness.diskspace import NO_SPACE_REASON, Reserve, is_no_space, with_room
from harness.errors import ContainerRunError
from harness.nofollow import read_bytes
from harness.results.io import load_or_rebuild, update_run
from harness.results.schema import EVENTS_FILENAME, RESULTS_FILENAME, SCHEMA_VERSION, STDOUT_FILENAME
from harness.results.status import Evidence, decide_status

SHM_HINT = ("the run ran out of shared memory (DataLoader workers pass batches through /dev/shm): "
            "raise --shm-size (e.g. 8g) or use --ipc host")
_SHM_MARKERS = ("bus error", "shared memory", "/dev/shm", "shm_open")
# Plans harness itself is stopping (Ctrl-C of a parallel plan, see cleanup.stop_plan): their runs
# end "interrupted"; any other stop from outside (docker kill, kill -9) is a failed run.
STOPPING: set[str] = set()


def run_dir_for(request: RunRequest) -> Path:
    assert request.run_id is not None
    return request.experiment.results_dir / request.mode / request.run_id


def _reserve(request: RunRequest) -> Reserve | None:
    return Reserve(request.reserve) if request.reserve is not None else None


def prepare_run_dir(request: RunRequest) -> Path:
    """Create ``results/<mode>/<run_id>/`` on the host, as the invoking user, before the run starts.

    Raises:
        ContainerRunError: when the folder cannot be made (a full disk: the plan stops there).
    """
    run_dir = run_dir_for(request)
    try:
        with_room(lambda: run_dir.mkdir(parents=True, exist_ok=True), _reserve(request))
    except OSError as e:
        raise ContainerRunError(f"cannot create the run folder {run_dir}: {(e.strerror or str(e)).lower()}") from e
    return run_dir


def open_run_log(request: RunRequest, run_dir: Path) -> RunLog:
    """The run's stdout.log, created before the run starts (so no link planted later redirects it).

    Raises:
        ContainerRunError: when it cannot be created.
    """
    try:
        return with_room(lambda: RunLog(run_dir / STDOUT_FILENAME, request.echo), _reserve(request))
    except OSError as e:
        raise ContainerRunError(f"cannot create {run_dir / STDOUT_FILENAME}: {(e.strerror or str(e)).lower()}") from e


def _load_or_rebuild(run_dir: Path) -> dict[str, Any] | None:
    try:
        return load_or_rebuild(run_dir)
    except Exception:  # a rebuild that fails must not hide the run's status; we write a minimal one
        return None


def _oom_in_events(data: dict[str, Any] | None, mode: str) -> bool:
    if not data:
        return False
    summary = data.get("modes", {}).get(mode, {}).get("summary", {})
    return bool((summary.get("memory") or {}).get("oom_kills"))


def _signal_message(exit_code: int | None) -> str:
    if exit_code is None:
        return "no exit code"
    if exit_code == 137:
        return "killed (SIGKILL)"
    if exit_code > 128:
        try:
            return f"killed ({signal.Signals(exit_code - 128).name})"
        except ValueError:
            return f"exit code {exit_code}"
    if exit_code < 0:
        try:
            return f"killed ({signal.Signals(-exit_code).name})"
        except ValueError:
            return f"exit code {exit_code}"
    return f"exit code {exit_code}"


def _minimal_results(request: RunRequest, backend: str, started: float, image: str | None,
                     image_id: str | None) -> dict[str, Any]:
    """What we can say about a run whose agent wrote nothing (it never started, or died at once)."""
    now = time.time()
    return {
        "schema_version": SCHEMA_VERSION, "experiment_name": request.experiment.name, "timestamp": int(started),
        "datetime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "run": {"run_id": request.run_id, "mode": request.mode, "seed": request.seed, "status": "failed",
                "exit_code": None, "signal": None, "error": None, "wall_time": now - started,
                "started_at": started, "ended_at": now, "command": None, "backend": backend, "image": image,
                "gpus": list(request.gpu_ids or []), "plan_id": request.plan_id, "node": None},
        "environment": {"harness_version": __version__, "image_id": image_id, "seed": request.seed},
        "modes": {request.mode: {"config": {}, "batch_times": []}},
    }


def shm_problem(log_path: Path) -> bool:
    """Whether a failed run's log shows the symptoms of a too small /dev/shm."""
    try:
        tail = read_bytes(log_path, tail=65536).decode("utf-8", "replace").lower()
    except OSError:
        return False
    return any(m in tail for m in _SHM_MARKERS)


def _message(status: str, exit_code: int | None) -> str:
    if status == "completed":
        return "completed"
    if status == "oom_killed":
        return "killed by the OOM killer: the run exceeded its memory limit"
    if status == "timeout":
        return "stopped at its timeout"
    if status == "interrupted":
        return "interrupted"
    return _signal_message(exit_code)


def _unreadable(run_dir: Path) -> str:
    """Why a run that exited 0 has no readable results (the script removed or replaced them)."""
    try:
        mode = os.lstat(run_dir / RESULTS_FILENAME).st_mode
    except OSError:
        return f"no readable {RESULTS_FILENAME} or {EVENTS_FILENAME}"
    return f"{RESULTS_FILENAME} is not a file" if not stat.S_ISREG(mode) else f"{RESULTS_FILENAME} is unreadable"


def _write(request: RunRequest, run_dir: Path, data: dict[str, Any], fields: dict[str, Any]) -> str | None:
    """Write the run's results.json; returns why it could not be written whole (or None).

    On a full disk the run is recorded as incomplete in the room the plan's reserve leaves.
    """
    try:
        update_run(run_dir, base=data, **fields)
        return None
    except OSError as e:
        if not is_no_space(e):  # e.g. the script made results.json a folder: leave it, say so
            return f"{RESULTS_FILENAME} is not a file" if e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) \
                else f"{RESULTS_FILENAME}: {(e.strerror or str(e)).lower()}"
    fields.update(status="failed", results_incomplete=NO_SPACE_REASON, error=f"results incomplete: {NO_SPACE_REASON}")
    reserve = _reserve(request)
    if reserve is not None:
        reserve.release()
    try:
        update_run(run_dir, base=data, **fields)
    except OSError:
        pass  # state.json still records the run
    return NO_SPACE_REASON


def finish_run(request: RunRequest, run_dir: Path, *, backend: str, exit_code: int | None, interrupted: bool,
               wall_time: float, image: str | None = None, image_id: str | None = None,
               engine_oom: bool = False, log_error: str | None = None, record: dict[str, Any] | None = None) -> RunOutcome:
    """Settle the run's status, complete its results.json, and return the outcome.

    ``interrupted`` means the user stopped harness; a run stopped from outside (``docker kill``,
    ``kill -9`` of a local agent) is a failed run. ``log_error`` says why some output could not be logged.
    ``record``: what only the backend knows, set as ``run.<key>`` (cpu_source, limits, code).
    """
    data = _load_or_rebuild(run_dir)
    recorded = data["run"].get("status") if data else None
    unreadable = None
    if data is None:
        data = _minimal_results(request, backend, time.time() - wall_time, image, image_id)
        if exit_code == 0:  # the script ended well, yet nothing it measured can be read
            unreadable = _unreadable(run_dir)
    interrupted = interrupted or (request.plan_id is not None and request.plan_id in STOPPING)
    status = decide_status(Evidence(exit_code=exit_code, user_stopped=interrupted, engine_oom=engine_oom,
                                    oom_counter_rose=_oom_in_events(data, request.mode),
                                    recorded=recorded or "failed"))
    if status == "interrupted" and not interrupted:
        status = "failed"  # stopped from outside: a failed run, and the plan goes on
    incomplete = data.get("run", {}).get("results_incomplete") or log_error or unreadable
    if incomplete and status == "completed":
        status = "failed"
    message = _message(status, exit_code)
    hint = None
    if status == "failed" and shm_problem(run_dir / STDOUT_FILENAME):
        hint = SHM_HINT
    elif status == "oom_killed":
        hint = "raise --memory, or lower the batch size / number of DataLoader workers"
    run = data.setdefault("run", {})
    fields: dict[str, Any] = {"status": status, "backend": backend}
    if run.get("exit_code") is None:
        fields["exit_code"] = exit_code
    if request.gpu_ids and not run.get("gpus"):
        fields["gpus"] = [str(g) for g in request.gpu_ids]
    if status != "completed" and not run.get("error"):
        fields["error"] = message
    fields.update(record or {})
    fields["pids_limit"] = request.settings().pids if backend == "docker" else None
    if incomplete:
        fields["results_incomplete"] = incomplete
        fields["error"] = f"results incomplete: {incomplete}"
    incomplete = _write(request, run_dir, data, fields) or incomplete
    if incomplete:
        status, message = "failed", f"results incomplete: {incomplete}"
    assert request.run_id is not None
    return RunOutcome(run_id=request.run_id, run_dir=run_dir, status=status, exit_code=exit_code,
                      backend=backend, wall_time=wall_time, message=message, hint=hint,
                      results_incomplete=incomplete)
