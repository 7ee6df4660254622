"""A plan on a real two-node Ray cluster on this machine, with declared GPUs that do not exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends import RunOptions
from harness.experiment import load_experiment
from harness.plan import load_plan


from test_plan import execute, write_experiment

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'harness[ray]'")


@pytest.fixture
def two_node_cluster(monkeypatch: pytest.MonkeyPatch):
    """A head and a second node (separate raylets), 1 CPU and 2 declared GPUs each, on 127.0.0.1 only.

    Ray's own test cluster starts and stops exactly the processes it made, unlike ``ray stop``,
    which kills every Ray process on the machine.
    """
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # A driver rewrites a loopback address to the machine's routable IP, where a 127.0.0.1-only
    # cluster does not listen (and ray.init waits for ever); Ray's single-machine switch keeps loopback.
    monkeypatch.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0")
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)

    node = {"num_cpus": 1, "num_gpus": 2, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.mark.timeout(300)
def test_plan_runs_across_both_nodes_and_results_land_on_the_driver(tmp_path: Path, two_node_cluster) -> None:
    # Long enough that two runs overlap: with 1 CPU per node, overlapping runs are on different nodes.
    script = "import os, time; print('visible', os.environ.get('CUDA_VISIBLE_DEVICES')); time.sleep(3)\n"
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": script, "optimization": script}))
    (exp.path / "lib").mkdir()
    (exp.path / "lib" / "helper.py").write_text("X = 1\n")  # code beside the scripts travels too
    lines: list[str] = []
    failed = execute(exp, ["all"], [0, 1], RunOptions(backend="local", gpus="count:1"), executor="ray",
                     address=two_node_cluster.address, echo=lines.append)
    assert failed == []
    plan = load_plan(exp)
    assert [(r.mode, r.seed, r.status) for r in plan.runs] == [
        ("baseline", 0, "completed"), ("optimization", 0, "completed"),
        ("baseline", 1, "completed"), ("optimization", 1, "completed")]
    node_ids = {n["NodeID"] for n in ray.nodes()} if ray.is_initialized() else None
    assert len({r.node for r in plan.runs}) == 2  # both nodes ran runs
    if node_ids is not None:
        assert {r.node for r in plan.runs} <= node_ids
    for run in plan.runs:
        assert len(run.gpus) == 1 and run.gpus[0] in ("0", "1")
        run_dir = exp.results_dir / run.mode / run.run_id
        data = json.loads((run_dir / "results.json").read_text())
        assert data["run"]["status"] == "completed"
        assert data["run"]["plan_id"] == plan.plan_id
        assert data["run"]["ray"]["node_id"] == run.node
        assert data["run"]["ray"]["assigned_gpus"] == run.gpus
        assert data["run"]["ray"]["gpus_passed"] == []
        assert data["run"]["ray"]["gpu_note"].startswith(f"declared GPU ids {run.gpus[0]}, not passed")
        # The run was told to use no GPU at all rather than one nobody gave it.
        assert "visible \n" in (run_dir / "stdout.log").read_text()
        assert (run_dir / "events.jsonl").is_file()
    # No temp folder of a task leaks into the experiment.
    assert sorted(p.name for p in exp.results_dir.iterdir()) == ["baseline", "optimization", "plans"]
