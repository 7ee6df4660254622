"""Where each run of a plan goes on a Ray cluster: a node to itself, and a seed's modes on one node.

A benchmark run must own its machine: by default a node runs one run at a time, asking Ray for
the node's whole CPU count (so nothing else Ray schedules shares it either), and Ray nodes on one
physical host (same machine id) count as one machine. ``--parallel`` allows as many runs per node
as its CPUs/GPUs hold, each on its own CPU set / GPUs, as on one machine.

Each seed is bound to the node that ran its first mode, and its other modes wait for that node,
so each node runs whole (baseline, optimization) pairs, interleaved, and compare can test the
modes within each node. The scheduler is pure (nodes in, choices out), tested without a cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.errors import PlanError
from harness.plan.model import PlannedRun


@dataclass
class Node:
    """One alive Ray node: its resources as Ray sees them, its hardware as the node reported it."""

    node_id: str
    cpus: float
    gpus: float
    hardware: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """The physical machine: Ray nodes sharing a machine id are one host."""
        return str(self.hardware.get("machine_id") or self.node_id)


@dataclass
class Placement:
    """A run's node, the resources to ask Ray for there, and its slot among the runs its host takes at once."""

    node: Node
    num_cpus: float
    num_gpus: float
    slot: int
    slots: int


class NodeScheduler:
    """Chooses the next (run, node) from the runs waiting, the nodes and what runs where now."""

    def __init__(self, nodes: list[Node], *, parallel: bool, cpus_per_run: float | None, gpus_per_run: float) -> None:
        self.parallel = parallel
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.nodes: dict[str, Node] = {}
        self.busy: dict[str, int] = {}  # node id -> runs there now
        self.host_slots: dict[str, list[int]] = {}  # host -> slot numbers in use (disjoint CPU sets per host)
        self.ran: dict[str, int] = {}  # node id -> runs placed there
        self.seed_node: dict[Any, str] = {}
        self.update(nodes)

    def update(self, nodes: list[Node]) -> None:
        """Take the cluster's alive nodes now; a seed bound to a node that left is free again.

        Raises:
            PlanError: when no node can hold one run.
        """
        fits = [n for n in nodes if n.cpus >= max(self.cpus_per_run or 1, 1) and n.gpus >= self.gpus_per_run]
        if not fits:
            raise PlanError(f"no node of the Ray cluster can hold one run ({self.cpus_per_run or 1:g} CPU, "
                            f"{self.gpus_per_run:g} GPU)",
                            hint="start nodes with enough CPUs/GPUs (ray start --num-cpus/--num-gpus), or ask for "
                                 "less with --cpus/--gpus")
        self.nodes = {n.node_id: n for n in fits}
        self.seed_node = {s: n for s, n in self.seed_node.items() if n in self.nodes}

    def slots(self, node: Node) -> int:
        """How many runs ``node`` takes at once: 1, or with --parallel as many as its CPUs/GPUs hold."""
        if not self.parallel:
            return 1
        fits = [node.cpus / (self.cpus_per_run or 1)]
        if self.gpus_per_run > 0:
            fits.append(node.gpus / self.gpus_per_run)
        return max(1, math.floor(min(fits) + 1e-9))

    def host_slots_total(self, node: Node) -> int:
        """Runs the node's physical host takes at once (its Ray nodes together)."""
        return sum(self.slots(n) for n in self.nodes.values() if n.host == node.host) if self.parallel else 1

    def _free(self, node: Node) -> bool:
        if self.busy.get(node.node_id, 0) >= self.slots(node):
            return False
        if self.parallel:
            return True
        # One run per physical machine: another Ray node of this host running counts as busy.
        return not any(self.busy.get(other.node_id) for other in self.nodes.values() if other.host == node.host)

    def pick(self, queue: list[PlannedRun]) -> tuple[PlannedRun, Placement] | None:
        """The first run in plan order that has a free node (its seed's node, if it has one)."""
        for run in queue:
            bound = self.seed_node.get(run.seed)
            if bound is not None:
                node = self.nodes[bound]
                if self._free(node):
                    return run, self._place(run, node)
                continue
            free = [n for n in self.nodes.values() if self._free(n)]
            if free:
                node = min(free, key=lambda n: (self.ran.get(n.node_id, 0), n.node_id))
                return run, self._place(run, node)
        return None

    def _place(self, run: PlannedRun, node: Node) -> Placement:
        self.seed_node.setdefault(run.seed, node.node_id)
        self.busy[node.node_id] = self.busy.get(node.node_id, 0) + 1
        total = self.host_slots_total(node)
        used = self.host_slots.setdefault(node.host, [])
        slot = min(set(range(total)) - set(used), default=len(used))
        used.append(slot)
        self.ran[node.node_id] = self.ran.get(node.node_id, 0) + 1
        num_cpus = float(self.cpus_per_run or 1) if self.parallel else node.cpus
        return Placement(node, num_cpus, self.gpus_per_run, slot, total)

    def release(self, placement: Placement) -> None:
        node = placement.node
        self.busy[node.node_id] = max(0, self.busy.get(node.node_id, 0) - 1)
        used = self.host_slots.get(node.host, [])
        if placement.slot in used:
            used.remove(placement.slot)


def alive_nodes() -> list[Node]:
    """The cluster's alive nodes with their CPU/GPU totals (hardware not yet known)."""
    import ray

    return [Node(n["NodeID"], float(n.get("Resources", {}).get("CPU", 0)), float(n.get("Resources", {}).get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def probe_hardware(nodes: list[Node], timeout: float = 120.0) -> None:
    """Ask each node for its hardware (a zero-CPU task pinned there); fills ``node.hardware``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from harness.hardware import node_hardware

    task = ray.remote(node_hardware)
    refs = {n.node_id: task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False),
                                    name="harness hardware probe").remote() for n in nodes if not n.hardware}
    for node in nodes:
        if node.node_id in refs:
            try:
                node.hardware = ray.get(refs[node.node_id], timeout=timeout)
            except Exception:  # noqa: BLE001 - a node that does not answer keeps no hardware; its runs say so
                node.hardware = {}
