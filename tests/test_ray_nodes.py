"""Where runs go on a Ray cluster: one per machine by default, a seed's modes on one node (no cluster needed)."""

from __future__ import annotations

import pytest

from harness.errors import PlanError
from harness.hardware import describe, hardware_key, node_hardware
from harness.plan.model import PlannedRun
from harness.plan.ray_nodes import Node, NodeScheduler


def runs(seeds: int) -> list[PlannedRun]:
    return [PlannedRun(mode=m, seed=s) for s in range(seeds) for m in ("baseline", "optimization")]


def node(name: str, cpus: float = 4, gpus: float = 0, machine: str | None = None) -> Node:
    return Node(name, cpus, gpus, {"machine_id": machine or f"m-{name}"})


def drain(sched: NodeScheduler, queue: list[PlannedRun], finish_order: str = "fifo") -> list[tuple[str, int, str, int]]:
    """Run the scheduler to the end; (mode, seed, node, most runs at once on that node's host)."""
    out, running, peak = [], [], {}
    while queue or running:
        while (choice := sched.pick(queue)) is not None:
            run, place = choice
            queue.remove(run)
            running.append((run, place))
            host = place.node.host
            peak[host] = max(peak.get(host, 0), sum(1 for _, p in running if p.node.host == host))
        run, place = running.pop(0 if finish_order == "fifo" else -1)
        sched.release(place)
        out.append((run.mode, run.seed, place.node.node_id))
    return [(m, s, n, peak[sched.nodes[n].host]) for m, s, n in out]


def test_default_one_run_per_node_and_whole_pairs_per_node() -> None:
    sched = NodeScheduler([node("a"), node("b")], parallel=False, cpus_per_run=None, gpus_per_run=0)
    done = drain(sched, runs(4))
    by_node: dict[str, list[tuple[str, int]]] = {}
    for mode, seed, n, peak in done:
        assert peak == 1
        by_node.setdefault(n, []).append((mode, seed))
    # Each node runs whole seeds, both modes, baseline before optimization (interleaved pairs).
    assert sorted(by_node) == ["a", "b"]
    for items in by_node.values():
        seeds = {s for _, s in items}
        assert len(seeds) == 2 and sorted(items) == sorted((m, s) for s in seeds for m in ("baseline", "optimization"))
    for seed in range(4):
        assert len({n for _, s, n, _ in done if s == seed}) == 1


def test_whole_cpu_count_asked_and_parallel_asks_per_run() -> None:
    sched = NodeScheduler([node("a", cpus=8)], parallel=False, cpus_per_run=2, gpus_per_run=0)
    _, place = sched.pick(runs(1))
    assert (place.num_cpus, place.slots) == (8.0, 1)
    par = NodeScheduler([node("a", cpus=8)], parallel=True, cpus_per_run=2, gpus_per_run=0)
    queue = runs(4)
    places = []
    while (choice := par.pick(queue)) is not None:
        queue.remove(choice[0])
        places.append(choice[1])
    assert [p.num_cpus for p in places] == [2.0] * 4 and sorted(p.slot for p in places) == [0, 1, 2, 3]
    assert {p.slots for p in places} == {4}


def test_two_ray_nodes_of_one_machine_are_one_machine() -> None:
    nodes = [node("a", cpus=1, machine="same"), node("b", cpus=1, machine="same")]
    done = drain(NodeScheduler(nodes, parallel=False, cpus_per_run=None, gpus_per_run=0), runs(2))
    assert all(peak == 1 for *_, peak in done)
    assert {n for *_, n, _ in done} == {"a", "b"}  # both nodes used, one after the other
    shared = drain(NodeScheduler(nodes, parallel=True, cpus_per_run=None, gpus_per_run=0), runs(2))
    assert max(peak for *_, peak in shared) == 2


def test_gpus_decide_which_nodes_fit_and_how_many_runs_at_once() -> None:
    nodes = [node("cpu-only", cpus=16), node("gpu", cpus=16, gpus=4)]
    sched = NodeScheduler(nodes, parallel=True, cpus_per_run=None, gpus_per_run=2)
    assert list(sched.nodes) == ["gpu"] and sched.slots(sched.nodes["gpu"]) == 2
    with pytest.raises(PlanError, match="no node of the Ray cluster can hold one run"):
        NodeScheduler([node("cpu-only")], parallel=False, cpus_per_run=None, gpus_per_run=1)


def test_a_seed_whose_node_left_goes_elsewhere() -> None:
    sched = NodeScheduler([node("a"), node("b")], parallel=False, cpus_per_run=None, gpus_per_run=0)
    queue = runs(2)
    run, place = sched.pick(queue)
    queue.remove(run)
    assert (run.seed, place.node.node_id) == (0, "a")
    sched.release(place)
    sched.update([node("b")])  # a left the cluster
    run, place = sched.pick(queue)
    assert (run.mode, run.seed, place.node.node_id) == ("optimization", 0, "b")


def test_this_machines_hardware_and_its_description() -> None:
    hw = node_hardware()
    assert hw["cpu_count"] and hw["machine_id"] and hw["gpu_count"] == len(hw["gpu_names"])
    assert describe({"cpu_model": "Xeon", "cpu_count": 8, "gpu_names": ["A100", "A100"], "driver": "550",
                     "hostname": "n1"}) == "Xeon x8, 2x A100 (driver 550), host n1"
    assert hardware_key({**hw, "hostname": "other", "machine_id": "x"}) == hardware_key(hw)
