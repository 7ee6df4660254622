"""The node side of a plan on Ray: each (mode, seed) is one task, on whichever node has the GPUs and CPUs.

Nothing is shared but Ray's object store: the experiment's code and config travel with each task
as a tar (no results/, no data/), the task runs the run on its node with the ordinary backends
(Docker when an engine answers there, else a local process), and ships the run's results folder
back as a tar, which the driver unpacks into ``results/<mode>/<run_id>/``.

Ray's own container runtime environment is deliberately not used: it does not pass GPUs into the
container. Instead the task turns the GPU ids Ray assigned it into Docker device ids (UUIDs from
NVML, which cannot be confused by CUDA's device ordering). GPUs that Ray was told about but NVML
does not see (``ray start --num-gpus 2`` on a machine without them) are recorded as declared and
not passed to the run, and the run is told to use none, so it never grabs a GPU nobody gave it.
"""

from __future__ import annotations

import io
import socket
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import PlanError

# Never shipped to a node: results are what comes back, data is too big and lives on the nodes.
_SKIP_TOP = {"results", ".git", ".venv", "venv", ".ipynb_checkpoints"}
_SKIP_ANY = {"__pycache__", ".pytest_cache", ".mypy_cache"}


# --------------------------------------------------------------------------- shipping folders
def pack_experiment(path: Path, data_dir: str = "data") -> bytes:
    """The experiment's code and config as a tar.gz, without results/, data/ and caches."""
    skip_top = _SKIP_TOP | {Path(data_dir).parts[0]}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if len(parts) > 1 and parts[1] in skip_top:
            return None
        if _SKIP_ANY & set(parts) or info.name.endswith(".pyc"):
            return None
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        tar.add(path, arcname="experiment", filter=keep)
    return buf.getvalue()


def pack_folder(path: Path) -> bytes:
    """A run's results folder as a tar.gz (events.jsonl compresses tenfold)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3) as tar:
        tar.add(path, arcname=path.name)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> Path:
    """Extract a tar made by :func:`pack_experiment` / :func:`pack_folder` into ``dest``; returns its top folder.

    The "data" filter refuses absolute paths, links out of ``dest`` and device files, so a
    tampered tar cannot write outside.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        tar.extractall(dest, filter="data")
    top = {Path(n).parts[0] for n in names if n}
    if len(top) != 1:
        raise PlanError(f"a tar from a Ray task holds {len(top)} top folders, expected 1")
    return dest / top.pop()


# --------------------------------------------------------------------------- on the node
def map_gpus(assigned: list[str]) -> tuple[list[str] | None, str]:
    """Turn the GPU ids Ray assigned into Docker device ids; (None, why) when they are not real.

    Ray's ids are NVML indices on the node (Ray detects GPUs with NVML, or takes them from
    CUDA_VISIBLE_DEVICES at ``ray start``); Docker wants indices or UUIDs in NVML order. UUIDs
    are unambiguous, so the ids are passed as UUIDs.
    """
    if not assigned:
        return None, ""
    from harness.plan.slots import detect_gpus

    gpus, why = detect_gpus()
    by_index = {g.index: g.uuid for g in gpus}
    missing = [g for g in assigned if g not in by_index]
    if missing:
        reason = why or f"NVML sees GPU(s) {','.join(by_index) or 'none'}"
        return None, (f"declared GPU ids {','.join(assigned)}, not passed: no such NVIDIA GPU on this node "
                      f"({reason})")
    return [by_index[g] for g in assigned], ""


def _link_data(experiment_dir: Path, data_dir: str, source: str | None) -> str:
    """Point the unpacked experiment's data folder at the node's copy of the driver's data."""
    if not source:
        return ""
    target = experiment_dir / data_dir
    if not Path(source).is_dir():
        raise PlanError(f"the data is at {source} on the driver but not on node {socket.gethostname()}",
                        hint="copy the data to the same path on every node (data does not travel with tasks)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source, target_is_directory=True)
    return source


def _slot_cpuset(spec: dict[str, Any], has_gpus: bool) -> str | None:
    """With --parallel on a node, this run's own CPU set (slot i of n), as on one machine."""
    slot, slots = spec.get("slot") or (0, 1)
    if slots <= 1 or has_gpus:
        return None
    from harness.plan.slots import available_cpus, cpu_slots

    sets = cpu_slots(available_cpus(), slots, spec.get("cpus_per_run"))
    return sets[slot] if slot < len(sets) else None


def run_task(experiment_tar: bytes, spec: dict[str, Any]) -> dict[str, Any]:
    """The Ray task body: unpack, run one (mode, seed) with the node's backend, pack the results.

    Returns a plain dict (pickles across Ray versions, unlike our exception types); a harness
    error on the node becomes a failed run carrying the message, so one bad node does not stop a
    night's plan.
    """
    import ray

    from harness import __version__
    from harness.hardware import node_hardware
    from harness.backends import RunOptions, RunRequest, run_mode
    from harness.errors import HarnessError
    from harness.experiment import load_experiment
    from harness.modes import ModeSpec

    ctx = ray.get_runtime_context()
    assigned = [str(g) for g in ray.get_gpu_ids()]
    reply: dict[str, Any] = {
        "run_id": spec["run_id"], "node_id": ctx.get_node_id(), "hostname": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(), "assigned_gpus": assigned, "gpus_passed": [],
        "gpu_note": "", "harness_version": __version__, "results_tar": None, "log": [],
        "hardware": node_hardware(), "cpuset": None,
    }
    log: list[str] = reply["log"]
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as tmp:
        try:
            exp_dir = unpack(experiment_tar, Path(tmp))
            _link_data(exp_dir, spec["data_dir"], spec.get("data_source"))
            experiment = load_experiment(exp_dir).with_one_off_modes(
                {name: ModeSpec.model_validate(value) for name, value in spec.get("one_off_modes", {}).items()})
            options = RunOptions(**spec["options"])
            gpu_ids, note = map_gpus(assigned)
            reply["gpus_passed"], reply["gpu_note"] = gpu_ids or [], note
            if gpu_ids is None:
                # Only GPUs Ray handed to this task may be used; none real means none at all.
                options.gpus = "none"
            reply["cpuset"] = _slot_cpuset(spec, bool(assigned))
            request = RunRequest(experiment=experiment, mode=spec["mode"], seed=spec["seed"], options=options,
                                 run_id=spec["run_id"], plan_id=spec["plan_id"], gpu_ids=gpu_ids,
                                 cpuset=reply["cpuset"], echo=log.append)
            outcome = run_mode(request)
        except HarnessError as e:
            reply.update(status="failed", exit_code=None, backend=None, wall_time=0.0,
                         message=f"on node {reply['hostname']}: {e}" + (f" (hint: {e.hint})" if e.hint else ""))
            return reply
        reply.update(status=outcome.status, exit_code=outcome.exit_code, backend=outcome.backend,
                     wall_time=outcome.wall_time, message=outcome.message)
        if outcome.run_dir.is_dir():
            reply["results_tar"] = pack_folder(outcome.run_dir)
    del log[:-50]
    return reply


def remove_leftovers_task(plan_id: str) -> int:
    """Ray task: remove what this plan left running on the node it runs on; returns containers removed."""
    from harness.backends import cleanup_plan

    return cleanup_plan(plan_id)
