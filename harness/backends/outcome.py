"""What both backends do around a run: make its folder, then settle its status and results.json.

The agent's ``results.json`` is authoritative for what the script did; the backend adds what
only it knows (which backend, which image, that the user pressed Ctrl-C, that the engine saw
an OOM kill, that the agent itself died and wrote nothing).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from harness import __version__
from harness.backends import RunOutcome, RunRequest
from harness.errors import ResultsError
from harness.results import EVENTS_FILENAME, RESULTS_FILENAME, SCHEMA_VERSION, STDOUT_FILENAME, load_results_file, \
    write_json_atomic

SHM_HINT = ("the run ran out of shared memory (DataLoader workers pass batches through /dev/shm): "
            "raise --shm-size (e.g. 8g) or use --ipc host")
_SHM_MARKERS = ("bus error", "shared memory", "/dev/shm", "shm_open")


def run_dir_for(request: RunRequest) -> Path:
    assert request.run_id is not None
    root = request.results_root or request.experiment.results_dir
    return Path(root) / request.mode / request.run_id


def prepare_run_dir(request: RunRequest) -> Path:
    """Create ``results/<mode>/<run_id>/`` on the host, as the invoking user, before the run starts."""
    run_dir = run_dir_for(request)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _load_or_rebuild(run_dir: Path) -> dict[str, Any] | None:
    try:
        return load_results_file(run_dir / RESULTS_FILENAME)
    except ResultsError:
        pass
    if (run_dir / EVENTS_FILENAME).is_file():
        try:
            from harness.results_build import rebuild_from_events

            return rebuild_from_events(run_dir)
        except Exception:  # a rebuild that fails must not hide the run's status; we write a minimal one
            return None
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


def _minimal_results(request: RunRequest, backend: str, started: float) -> dict[str, Any]:
    """What we can say about a run whose agent wrote nothing (it never started, or died at once)."""
    now = time.time()
    return {
        "schema_version": SCHEMA_VERSION, "experiment_name": request.experiment.name, "timestamp": int(started),
        "datetime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "run": {"run_id": request.run_id, "mode": request.mode, "seed": request.seed, "status": "failed",
                "exit_code": None, "signal": None, "error": None, "wall_time": now - started,
                "started_at": started, "ended_at": now, "command": None, "backend": backend, "image": None,
                "gpus": list(request.gpu_ids or []), "plan_id": request.plan_id, "node": None},
        "environment": {"harness_version": __version__, "image_id": None, "seed": request.seed},
        "modes": {request.mode: {"config": {}, "batch_times": []}},
    }


def shm_problem(log_path: Path) -> bool:
    """Whether a failed run's log shows the symptoms of a too small /dev/shm."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode("utf-8", "replace").lower()
    except OSError:
        return False
    return any(m in tail for m in _SHM_MARKERS)


def finish_run(request: RunRequest, run_dir: Path, *, backend: str, exit_code: int | None, interrupted: bool,
               wall_time: float, image: str | None = None, image_id: str | None = None,
               engine_oom: bool = False) -> RunOutcome:
    """Settle the run's status, complete its results.json, and return the outcome."""
    started = time.time() - wall_time
    data = _load_or_rebuild(run_dir)
    agent_status = data["run"].get("status") if data else None
    if data is None:
        data = _minimal_results(request, backend, started)
    run = data.setdefault("run", {})

    if interrupted:
        status = "interrupted"
    elif agent_status in ("oom_killed", "timeout"):
        status = agent_status
    elif agent_status == "completed" and exit_code == 0:
        status = "completed"
    elif exit_code is not None and exit_code != 0 and (engine_oom or _oom_in_events(data, request.mode)):
        # The engine's OOMKilled flag alone is unreliable (it misses kills of a child of PID 1);
        # the agent's cgroup counter is the first witness, the flag a second one.
        status = "oom_killed"
    elif agent_status in ("failed", "interrupted"):
        status = agent_status
    else:
        status = "failed"

    if status == "completed":
        message = "completed"
    elif status == "oom_killed":
        message = "killed by the OOM killer: the run exceeded its memory limit"
    elif status == "timeout":
        message = "stopped at its timeout"
    elif status == "interrupted":
        message = "interrupted"
    else:
        message = _signal_message(exit_code)
    hint = None
    if status == "failed" and shm_problem(run_dir / STDOUT_FILENAME):
        hint = SHM_HINT
    elif status == "oom_killed":
        hint = "raise --memory, or lower the batch size / number of DataLoader workers"

    run["status"] = status
    run["backend"] = backend
    if run.get("exit_code") is None:
        run["exit_code"] = exit_code
    if image and not run.get("image"):
        run["image"] = image
    if request.gpu_ids and not run.get("gpus"):
        run["gpus"] = [str(g) for g in request.gpu_ids]
    if request.plan_id and not run.get("plan_id"):
        run["plan_id"] = request.plan_id
    if status != "completed" and not run.get("error"):
        run["error"] = message
    env = data.setdefault("environment", {})
    if image_id and not env.get("image_id"):
        env["image_id"] = image_id
    write_json_atomic(run_dir / RESULTS_FILENAME, data)
    assert request.run_id is not None
    return RunOutcome(run_id=request.run_id, run_dir=run_dir, status=status, exit_code=exit_code,
                      backend=backend, wall_time=wall_time, message=message, hint=hint)
