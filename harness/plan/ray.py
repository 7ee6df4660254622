"""Running a plan on a Ray cluster: as many runs at a time as the cluster holds, in plan order.

The driver side: it connects (or starts a local cluster), ships the experiment to each task (see
``harness.plan.ray_task``), brings each run's folder home and records it through the shared
``Executor`` bookkeeping. Ctrl-C cancels the tasks and keeps what they send back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.backends import new_run_id
from harness.errors import MissingDependencyError
from harness.experiment import Experiment
from harness.plan.executor import Executor
from harness.plan.model import PLAN_STATUSES, Plan, PlannedRun
from harness.plan.ray_connect import connect
from harness.plan.ray_nodes import NodeScheduler, Placement, alive_nodes, probe_hardware
from harness.plan.ray_task import pack_experiment, remove_leftovers_task, run_task, unpack
from harness.results.io import load_results_file, update_run
from harness.results.schema import RESULTS_FILENAME
from harness.settings import RunSettings

RAY_HINT = "pip install 'harness[ray]'"
# How long a cancelled task may take to stop its container and send back what it measured.
CANCEL_GRACE_S = 60.0
# How often the driver looks for nodes that joined or left while runs wait.
NODE_REFRESH_S = 10.0


def check_ray() -> None:
    """Raises MissingDependencyError when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"--executor ray needs Ray: {RAY_HINT}") from e


def task_resources(settings: RunSettings) -> tuple[float, float]:
    """(num_cpus, num_gpus) one run needs at least (without --parallel it takes its node's whole CPU count).

    Raises:
        UsageError: for ``--gpus all``, which names no number Ray could reserve.
    """
    num_cpus = float(settings.cpus) if settings.cpus is not None else 1.0
    return num_cpus, settings.gpus.ray_gpus()


def cleanup_nodes(plan_id: str) -> int:
    """Remove a plan's leftover containers on every alive node (after a driver crash)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(remove_leftovers_task)
    refs = [task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
            .remote(plan_id) for node in ray.nodes() if node.get("Alive")]
    return sum(ray.get(refs, timeout=120)) if refs else 0


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


def _annotate(run_dir: Path, reply: dict[str, Any], placement: Placement | None = None) -> None:
    """Record where the run ran, on what hardware, and which GPUs Ray gave it in its results.json."""
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
    if reply.get("hardware"):
        fields["hardware"] = reply["hardware"]
    if placement is not None and placement.slots > 1:
        fields["parallel"] = {"runs_at_once": placement.slots, "cpuset": reply.get("cpuset"),
                              "gpus": list(reply.get("assigned_gpus") or []),
                              "note": f"--parallel: {placement.slots} runs at a time on host "
                                      f"{(reply.get('hardware') or {}).get('hostname') or placement.node.host}"}
    update_run(run_dir, base=data, **fields)


class RayExecutor(Executor):
    """Runs a plan's pending runs as Ray tasks."""

    def __init__(self, experiment: Experiment, plan: Plan, progress: Any, *, settings: RunSettings,
                 resuming: bool = False, on_run_completed: Any = None) -> None:
        super().__init__(experiment, plan, progress, on_run_completed=on_run_completed)
        self.settings = settings
        self.resuming = resuming

    def run(self, todo: list[PlannedRun]) -> None:
        """Run ``todo`` as Ray tasks, as many at a time as the cluster holds, in plan order.

        Raises:
            MissingDependencyError: without Ray.
            PlanError: when the cluster cannot be reached.
            KeyboardInterrupt: after Ctrl-C, once the runs in flight have stopped and been saved.
        """
        check_ray()
        import ray

        connected = connect(self.plan.address)
        try:
            if self.resuming:
                removed = cleanup_nodes(self.plan.plan_id)
                if removed:
                    self.progress.log(f"Removed {removed} leftover container(s) of plan {self.plan.plan_id} "
                                      "on the cluster.")
            self._run_tasks(todo)
        finally:
            if connected:
                ray.shutdown()

    def _nodes(self, known: dict[str, Any]) -> list[Any]:
        """The alive nodes, each asked once for its hardware."""
        nodes = [known.setdefault(n.node_id, n) for n in alive_nodes()]
        probe_hardware(nodes)
        return nodes

    def _run_tasks(self, todo: list[PlannedRun]) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        exp = self.experiment
        num_cpus, num_gpus = task_resources(self.settings)
        known: dict[str, Any] = {}
        scheduler = NodeScheduler(self._nodes(known), parallel=self.plan.parallel,
                                  cpus_per_run=self.settings.cpus, gpus_per_run=num_gpus)
        data_source = str(exp.data_dir) if exp.data_dir.is_dir() and any(exp.data_dir.iterdir()) else None
        tar_ref = ray.put(pack_experiment(exp.path, exp.config.data_dir))
        remote = ray.remote(run_task)
        queue = list(todo)
        in_flight: dict[Any, tuple[PlannedRun, Placement]] = {}
        refreshed = time.monotonic()
        try:
            while queue or in_flight:
                if queue and time.monotonic() - refreshed > NODE_REFRESH_S:
                    scheduler.update(self._nodes(known))  # nodes that joined or left
                    refreshed = time.monotonic()
                while queue and not self._stop and (choice := scheduler.pick(queue)) is not None:
                    run, place = choice
                    queue.remove(run)
                    self.begin(run, new_run_id(run.seed), remote=True)
                    spec = {"mode": run.mode, "seed": run.seed, "run_id": run.run_id, "plan_id": self.plan.plan_id,
                            "options": dict(self.plan.options), "data_dir": exp.config.data_dir,
                            "data_source": data_source, "one_off_modes": self.plan.one_off_modes,
                            "slot": [place.slot, place.slots],
                            "cpus_per_run": self.settings.cpus, "hardware": place.node.hardware}
                    strategy = NodeAffinitySchedulingStrategy(place.node.node_id, soft=False)
                    ref = remote.options(num_cpus=place.num_cpus, num_gpus=place.num_gpus, max_retries=0,
                                         scheduling_strategy=strategy,
                                         name=f"harness {run.mode} seed {run.seed}").remote(tar_ref, spec)
                    in_flight[ref] = (run, place)
                if not in_flight:
                    break
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in done:
                    run, place = in_flight.pop(ref)
                    scheduler.release(place)
                    self._record(run, ref, place)
                if self._stop and not in_flight:
                    break
        except KeyboardInterrupt:
            self._cancel(in_flight)
            raise

    def _record(self, run: PlannedRun, ref: Any, place: Placement | None = None) -> None:
        """Bring one task's results home and record how the run ended."""
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
            self.progress.log(f"  {run.label}: {line}")
        run_dir = self.run_dir(run)
        if reply.get("results_tar"):
            _bring_home(reply["results_tar"], run_dir)
            _annotate(run_dir, reply, place)
        status = reply["status"] if reply["status"] in PLAN_STATUSES and reply["status"] not in ("pending", "running") \
            else "failed"
        run.wall_time, run.backend = reply.get("wall_time"), reply.get("backend")
        run.node = reply.get("node_id")
        run.gpus = list(reply.get("assigned_gpus") or [])
        run.cpuset = reply.get("cpuset")
        notes = [reply.get("message") or ("" if status == "completed" else f"exit code {reply.get('exit_code')}")]
        if reply.get("hostname"):
            notes.append(f"node {reply['hostname']} ({(reply.get('node_id') or '')[:12]})")
        if reply.get("gpu_note"):
            notes.append(reply["gpu_note"])
        self.finish(run, status, "; ".join(n for n in notes if n), run_dir if run_dir.is_dir() else None)

    def _cancel(self, in_flight: dict[Any, tuple[PlannedRun, Placement]]) -> None:
        """Ctrl-C: ask the running tasks to stop (their backends stop the runs), keep what they send back."""
        import ray

        for ref in in_flight:
            ray.cancel(ref, force=False)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while in_flight and time.monotonic() < deadline:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done:
                run, place = in_flight.pop(ref)
                self._record(run, ref, place)
        for ref, (run, _place) in in_flight.items():
            ray.cancel(ref, force=True)
            run.status, run.ended, run.message = "interrupted", time.time(), "stopped by Ctrl-C"
        self.save()
