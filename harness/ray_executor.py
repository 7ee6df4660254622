"""Run a plan's runs as Ray tasks, one per (mode, seed), on whichever node has the GPUs and CPUs.

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
import math
import os
import shutil
import socket
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.errors import MissingDependencyError, PlanError, UsageError
from harness.results.io import load_results_file, update_run
from harness.results.schema import RESULTS_FILENAME

if TYPE_CHECKING:
    from harness.experiment import Experiment
    from harness.plan import Plan, PlannedRun, Progress

RAY_HINT = "pip install 'harness[ray]'"
# Never shipped to a node: results are what comes back, data is too big and lives on the nodes.
_SKIP_TOP = {"results", ".git", ".venv", "venv", ".ipynb_checkpoints"}
_SKIP_ANY = {"__pycache__", ".pytest_cache", ".mypy_cache"}
# How long a cancelled task may take to stop its container and send back what it measured.
CANCEL_GRACE_S = 60.0


def check_ray() -> None:
    """Raises MissingDependencyError when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"--executor ray needs Ray: {RAY_HINT}") from e


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
    from harness.scheduling import detect_gpus

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


def run_task(experiment_tar: bytes, spec: dict[str, Any]) -> dict[str, Any]:
    """The Ray task body: unpack, run one (mode, seed) with the node's backend, pack the results.

    Returns a plain dict (pickles across Ray versions, unlike our exception types); a harness
    error on the node becomes a failed run carrying the message, so one bad node does not stop a
    night's plan.
    """
    import ray

    from harness import __version__
    from harness.backends import RunOptions, RunRequest, run_mode
    from harness.errors import HarnessError
    from harness.experiment import load_experiment

    ctx = ray.get_runtime_context()
    assigned = [str(g) for g in ray.get_gpu_ids()]
    reply: dict[str, Any] = {
        "run_id": spec["run_id"], "node_id": ctx.get_node_id(), "hostname": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(), "assigned_gpus": assigned, "gpus_passed": [],
        "gpu_note": "", "harness_version": __version__, "results_tar": None, "log": [],
    }
    log: list[str] = reply["log"]
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as tmp:
        try:
            exp_dir = unpack(experiment_tar, Path(tmp))
            _link_data(exp_dir, spec["data_dir"], spec.get("data_source"))
            experiment = load_experiment(exp_dir)
            options = RunOptions(**spec["options"])
            gpu_ids, note = map_gpus(assigned)
            reply["gpus_passed"], reply["gpu_note"] = gpu_ids or [], note
            if gpu_ids is None:
                # Only GPUs Ray handed to this task may be used; none real means none at all.
                options.gpus = "none"
            request = RunRequest(experiment=experiment, mode=spec["mode"], seed=spec["seed"], options=options,
                                 run_id=spec["run_id"], plan_id=spec["plan_id"], gpu_ids=gpu_ids,
                                 echo=log.append)
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
    """Ray task: remove this plan's leftover containers on the node it runs on."""
    from harness.plan import remove_leftover_containers

    return remove_leftover_containers(plan_id)


# --------------------------------------------------------------------------- on the driver
def task_resources(spec: str, cpus: float | None) -> tuple[float, float]:
    """(num_cpus, num_gpus) one run asks Ray for.

    Raises:
        UsageError: for ``--gpus all``, which names no number Ray could reserve.
    """
    num_cpus = float(cpus) if cpus is not None else 1.0
    if spec == "none":
        return num_cpus, 0.0
    if spec == "all":
        raise UsageError("--gpus all has no meaning on a Ray cluster; say how many GPUs each run needs",
                         hint="e.g. --gpus count:1")
    if spec.startswith("count:"):
        return num_cpus, float(spec[6:])
    return num_cpus, float(len(spec.split(",")))  # device ids: Ray picks which, we keep how many


def plan_resources(experiment: "Experiment", plan: "Plan") -> tuple[float, float]:
    """(num_cpus, num_gpus) each run of this plan asks Ray for.

    Raises:
        UsageError: for a GPU request Ray cannot express.
    """
    from harness.config import parse_gpus

    options = plan.run_options()
    try:
        spec = parse_gpus(options.gpus) if options.gpus is not None else experiment.config.resources.gpus
    except ValueError as e:
        raise UsageError(f"bad --gpus: {e}") from None
    cpus = options.cpus if options.cpus is not None else experiment.config.resources.cpus
    return task_resources(spec, cpus)


def _connect(address: str | None) -> bool:
    """Connect to the cluster (or start a local one); True when this call did the connecting."""
    import ray

    if ray.is_initialized():
        return False
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        _check_reachable(address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise PlanError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: {e}",
                        hint="start one with `ray start --head`, and pass its address with --address") from e
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a wrong address; ray.init retries an unreachable one for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address must be HOST:PORT, e.g. 10.0.0.5:6379 (got {address!r})")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise PlanError(f"no Ray cluster answers at {address} ({e.strerror or e})",
                        hint="start one with `ray start --head --port PORT` and pass its address") from e


def _capacity(num_cpus: float, num_gpus: float) -> int:
    """How many runs the cluster can hold at once now (at least 1: Ray queues the rest)."""
    import ray

    total = ray.cluster_resources()
    fits = [total.get("CPU", 0) / num_cpus] if num_cpus > 0 else []
    if num_gpus > 0:
        fits.append(total.get("GPU", 0) / num_gpus)
    return max(1, math.floor(min(fits))) if fits else 1


def cleanup_nodes(plan_id: str) -> int:
    """Remove a plan's leftover containers on every alive node (after a driver crash)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(remove_leftovers_task)
    refs = [task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
            .remote(plan_id) for node in ray.nodes() if node.get("Alive")]
    return sum(ray.get(refs, timeout=120)) if refs else 0


def run_plan_on_ray(experiment: "Experiment", plan: "Plan", todo: list["PlannedRun"], *, progress: "Progress",
                    save: Callable[[], None], record_error: Callable[["PlannedRun", Path | None], None],
                    resuming: bool = False) -> None:
    """Run ``todo`` as Ray tasks, as many at a time as the cluster holds, in plan order.

    Raises:
        MissingDependencyError: without Ray.
        PlanError: when the cluster cannot be reached.
        KeyboardInterrupt: after Ctrl-C, once the runs in flight have stopped and been saved.
    """
    check_ray()
    import ray

    from harness.backends import new_run_id

    num_cpus, num_gpus = plan_resources(experiment, plan)
    connected = _connect(plan.address)
    try:
        if resuming:
            removed = cleanup_nodes(plan.plan_id)
            if removed:
                progress.log(f"Removed {removed} leftover container(s) of plan {plan.plan_id} on the cluster.")
        data_dir = experiment.data_dir
        data_source = str(data_dir) if data_dir.is_dir() and any(data_dir.iterdir()) else None
        tar_ref = ray.put(pack_experiment(experiment.path, experiment.config.data_dir))
        remote = ray.remote(run_task)
        queue = list(todo)
        in_flight: dict[Any, "PlannedRun"] = {}
        stop = False
        try:
            while queue or in_flight:
                while queue and not stop and len(in_flight) < _capacity(num_cpus, num_gpus):
                    run = queue.pop(0)
                    run.run_id = new_run_id(run.seed)
                    run.status, run.started, run.ended, run.message = "running", time.time(), None, ""
                    run.attempts += 1
                    spec = {"mode": run.mode, "seed": run.seed, "run_id": run.run_id, "plan_id": plan.plan_id,
                            "options": dict(plan.options), "data_dir": experiment.config.data_dir,
                            "data_source": data_source}
                    ref = remote.options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=1,
                                         name=f"harness {run.mode} seed {run.seed}").remote(tar_ref, spec)
                    in_flight[ref] = run
                    save()
                    progress.start_run(run, Path("/nonexistent"), None, remote=True)
                if not in_flight:
                    break
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in done:
                    run = in_flight.pop(ref)
                    if _finish(experiment, run, ref, save, record_error, progress) and plan.fail_fast:
                        stop = True
                if stop and not in_flight:
                    break
        except KeyboardInterrupt:
            _cancel(experiment, in_flight, save, record_error, progress)
            raise
    finally:
        if connected:
            ray.shutdown()


def _finish(experiment: "Experiment", run: "PlannedRun", ref: Any, save: Callable[[], None],
            record_error: Callable[["PlannedRun", Path | None], None], progress: "Progress") -> bool:
    """Bring one task's results home and record it; True when the run failed."""
    import ray
    from ray.exceptions import RayError, TaskCancelledError

    try:
        reply = ray.get(ref)
    except TaskCancelledError:
        reply = {"status": "interrupted", "message": "cancelled", "results_tar": None}
    except RayError as e:
        # The worker or its node died; the run may be re-run with --resume.
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        reply = {"status": "failed", "message": f"Ray task failed: {first}", "results_tar": None}
    for line in reply.get("log", [])[-5:]:
        progress.log(f"  {run.label}: {line}")
    run_dir = experiment.results_dir / run.mode / run.run_id  # type: ignore[operator]
    if reply.get("results_tar"):
        _bring_home(reply["results_tar"], run_dir)
        _annotate(run_dir, reply)
    run.status = reply["status"] if reply["status"] in ("completed", "failed", "interrupted", "timeout",
                                                        "oom_killed") else "failed"
    run.wall_time, run.backend = reply.get("wall_time"), reply.get("backend")
    run.node = reply.get("node_id")
    run.gpus = list(reply.get("assigned_gpus") or [])
    notes = [reply.get("message") or ("" if run.status == "completed" else f"exit code {reply.get('exit_code')}")]
    if reply.get("hostname"):
        notes.append(f"node {reply['hostname']} ({(reply.get('node_id') or '')[:12]})")
    if reply.get("gpu_note"):
        notes.append(reply["gpu_note"])
    run.message = "; ".join(n for n in notes if n)
    run.ended = time.time()
    save()
    progress.end_run(run)
    if run.failed:
        record_error(run, run_dir if run_dir.is_dir() else None)
    return run.failed


def _bring_home(data: bytes, run_dir: Path) -> None:
    """Unpack a run folder beside its final place, then rename: a reader never sees half a run."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        top = unpack(data, staging)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(top, run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _annotate(run_dir: Path, reply: dict[str, Any]) -> None:
    """Record where the run ran and which GPUs Ray gave it in its results.json."""
    try:
        data = load_results_file(run_dir / RESULTS_FILENAME)
    except Exception:  # noqa: BLE001 - a run killed before results.json: state.json still has it
        return
    run = data["run"]
    fields: dict[str, Any] = {"node": reply.get("hostname") or run.get("node")}
    if not run.get("gpus"):
        fields["gpus"] = list(reply.get("assigned_gpus") or [])
    fields["ray"] = {"node_id": reply.get("node_id"), "node_ip": reply.get("node_ip"),
                     "assigned_gpus": list(reply.get("assigned_gpus") or []),
                     "gpus_passed": list(reply.get("gpus_passed") or []), "gpu_note": reply.get("gpu_note") or None,
                     "harness_version": reply.get("harness_version")}
    update_run(run_dir, base=data, **fields)


def _cancel(experiment: "Experiment", in_flight: dict[Any, "PlannedRun"], save: Callable[[], None],
            record_error: Callable[["PlannedRun", Path | None], None], progress: "Progress") -> None:
    """Ctrl-C: ask the running tasks to stop (their backends stop the runs), keep what they send back."""
    import ray

    for ref in in_flight:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while in_flight and time.monotonic() < deadline:
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
        for ref in done:
            _finish(experiment, in_flight.pop(ref), ref, save, record_error, progress)
    for ref, run in in_flight.items():
        ray.cancel(ref, force=True)
        run.status, run.ended, run.message = "interrupted", time.time(), "stopped by Ctrl-C"
    save()
