"""Runs from several machines (``--executor ray``): is the difference the mode's, or the node's?

Each run of a Ray plan records its node's hardware (``run.hardware``: CPU model and count, GPU
names, driver, machine id). Two warnings follow from it:

- the modes' runs came from different hardware: a fairness note naming the machines;
- no machine ran both modes (all baselines on A, all optimizations on B): node and mode are
  confounded, so the speed verdicts become INCONCLUSIVE with a warning that says why.

The Ray scheduler runs each seed's modes on one node, so the seed-paired test already compares
within nodes; the note says so when it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.compare import stats
from harness.hardware import describe, hardware_key

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison, RunData


def machine(run: RunData) -> str | None:
    """The physical machine a run ran on: its machine id when recorded, else its host name.

    Two Ray nodes on one host share a machine id (the hook for compare's overlapping-runs warning:
    runs that overlapped on one machine id shared it, whatever Ray node they were on).
    """
    hw = run.hardware or {}
    return hw.get("machine_id") or hw.get("hostname") or run.node or (run.environment or {}).get("hostname")


def _machines(runs: list[RunData]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        key = machine(r)
        if key is not None:
            out.setdefault(key, r.hardware or {"hostname": r.node})
    return out


def node_fairness(comp: Comparison) -> None:
    """Add the hardware warning, the node/mode confounding verdict, and the within-node note."""
    b, c = comp.baseline, comp.candidate
    rb, rc = comp.runs[b], comp.runs[c]
    if not any(r.hardware for r in (*rb, *rc)):
        return  # not a multi-machine plan: the environment facts cover one machine
    kb = {hardware_key(r.hardware) for r in rb}
    kc = {hardware_key(r.hardware) for r in rc}
    if kb != kc:
        comp.fairness.append(f"Modes ran on different hardware: {b} on {_listing(rb)}; {c} on {_listing(rc)}. "
                             "Their times differ by machine as well as by mode.")
    if any(machine(r) is None for r in (*rb, *rc)):
        return
    mb, mc = _machines(rb), _machines(rc)
    if not set(mb) & set(mc):
        _confounded(comp, mb, mc)
    elif comp.paired and len(set(mb) | set(mc)) > 1 and _pairs_within_nodes(rb, rc):
        kinds = f" ({_listing([*rb, *rc])})" if len(kb | kc) > 1 else ""
        comp.diagnosis.append(f"Runs came from {len(set(mb) | set(mc))} machines{kinds}; each seed's modes ran on "
                              "one of them, so the paired test compares the modes within machines and their "
                              "differences do not enter the verdict.")


def _listing(runs: list[RunData]) -> str:
    shown = sorted({describe(r.hardware) for r in runs})
    return " | ".join(shown)


def _confounded(comp: Comparison, mb: dict[str, dict[str, Any]], mc: dict[str, dict[str, Any]]) -> None:
    """No machine ran both modes: no test can tell the node's effect from the mode's."""
    for m in comp.speed:
        if m.verdict is not None:
            m.verdict = stats.INCONCLUSIVE
    names = {k: (hw.get("hostname") or k[:12]) for k, hw in {**mb, **mc}.items()}
    comp.warnings.append(
        f"INCONCLUSIVE: {comp.baseline} ran only on {', '.join(sorted(names[k] for k in mb))} and "
        f"{comp.candidate} only on {', '.join(sorted(names[k] for k in mc))}: the comparison cannot separate "
        "node from mode. Run each seed's modes on the same node (what --executor ray does by default) or "
        "on one machine.")


def _pairs_within_nodes(rb: list[RunData], rc: list[RunData]) -> bool:
    seeds_b = {r.seed: machine(r) for r in rb}
    return all(seeds_b.get(r.seed) == machine(r) for r in rc)
