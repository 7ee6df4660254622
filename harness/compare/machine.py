"""What else the machine did while the runs ran: overlapping runs, and background load.

Both make timings of one mode unlike the other's without any code difference: two ``harness
run`` in one experiment at once (each run of one shared the CPU with a run of the other), or a
neighbour's job during the baseline runs only. Each warning names what it saw, so the user can
judge, and fires only on a measured difference (docs/statistics.md, "The machine").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from harness.compare.nodes import machine as machine_of

if TYPE_CHECKING:
    from harness.compare.reduce import RunData

# Background CPU load (cores used by other processes) that makes two modes' conditions unlike.
OTHER_CORES_DIFFERENCE = 0.5  # cores, and ...
OTHER_CORES_SHARE = 0.15  # ... of the host's CPUs
STEAL_NOTABLE = 0.05
PSI_DIFFERENCE = 0.10
# Other processes under this share of the host's CPUs (and 0.1 cores at least): the host was quiet, and
# tasks waiting for a CPU were the run's own threads (DataLoader workers beside the training loop).
QUIET_OTHER_SHARE = 0.05


@dataclass(frozen=True)
class Interval:
    """One run's wall-clock interval on a host."""

    run_id: str
    mode: str
    plan_id: str | None
    machine: str | None  # compare.nodes.machine(run); None: the machine that ran the plan (this one)
    start: float
    end: float
    parallel: bool = False  # the plan ran it beside others (--parallel): warned about already


def run_interval(run: RunData) -> Interval | None:
    start, end = getattr(run, "started_at", None), getattr(run, "ended_at", None)
    if start is None or end is None or end <= start:
        return None
    par = getattr(run, "parallel", None)
    return Interval(run.run_id, run.mode, getattr(run, "plan_id", None), machine_of(run), start, end,
                    bool(par and (par.get("runs_at_once") or 1) > 1))


def ray_machines(runs: Iterable[RunData]) -> dict[str, str]:
    """Ray node id -> machine, from the runs' results (a plan's state.json names only the Ray node)."""
    out: dict[str, str] = {}
    for run in runs:
        ray, where = (run.record or {}).get("ray"), machine_of(run)
        if isinstance(ray, dict) and isinstance(ray.get("node_id"), str) and where:
            out[ray["node_id"]] = where
    return out


def plan_intervals(results_dir: Path, ray_nodes: dict[str, str] | None = None) -> list[Interval]:
    """Every run that plans of the experiment started, from their state.json files (cheap to read).

    Runs of modes that are not compared count too: they shared the machine all the same. A run
    of a Ray plan is on the machine ``ray_nodes`` names for its node, else on a machine of its own.
    """
    out: list[Interval] = []
    plans = Path(results_dir) / "plans"
    if not plans.is_dir():
        return out
    for state in sorted(plans.glob("*/state.json")):
        try:
            data = json.loads(state.read_text(encoding="utf-8"))
            runs = data.get("runs") or []
        except (OSError, ValueError, AttributeError):
            continue
        parallel = bool(data.get("parallel"))
        for r in runs:
            if not isinstance(r, dict):
                continue
            start, end = r.get("started"), r.get("ended")
            if not isinstance(r.get("run_id"), str) or not isinstance(start, (int, float)):
                continue
            if not isinstance(end, (int, float)):
                continue  # still running or cut short: its results decide
            where = None
            if data.get("executor") == "ray":
                node = str(r.get("node"))
                where = (ray_nodes or {}).get(node, f"ray node {node}")
            out.append(Interval(r["run_id"], str(r.get("mode")), data.get("plan_id"), where,
                                float(start), float(end), parallel))
    return out


def _same_host(a: Interval, b: Interval) -> bool:
    """One physical machine (a machine id, so two Ray nodes on one host count as one)."""
    return a.machine is None or b.machine is None or a.machine == b.machine


def overlaps(compared: Sequence[Interval], others: Iterable[Interval], min_overlap_s: float = 1.0
             ) -> list[tuple[Interval, Interval, float]]:
    """Pairs (compared run, other run, seconds) that ran at once on one host.

    Pairs inside one ``--parallel`` plan are left to that plan's own warning.
    """
    pool = {i.run_id: i for i in others}
    pool.update({i.run_id: i for i in compared})
    found: dict[frozenset[str], tuple[Interval, Interval, float]] = {}
    for a in compared:
        for b in pool.values():
            if a.run_id == b.run_id or not _same_host(a, b):
                continue
            if a.plan_id is not None and a.plan_id == b.plan_id and (a.parallel or b.parallel):
                continue
            seconds = min(a.end, b.end) - max(a.start, b.start)
            key = frozenset((a.run_id, b.run_id))
            if seconds >= min_overlap_s and key not in found:
                found[key] = (a, b, seconds)
    return sorted(found.values(), key=lambda t: (t[0].start, t[1].start))


def overlap_warning(pairs: list[tuple[Interval, Interval, float]], limit: int = 4) -> str | None:
    """One warning naming the overlapping runs."""
    if not pairs:
        return None
    shown = "; ".join(f"{a.mode} {a.run_id} with {b.mode} {b.run_id} ({s:.0f} s"
                      + (f", plans {a.plan_id} and {b.plan_id})" if a.plan_id != b.plan_id and a.plan_id and b.plan_id
                         else ")") for a, b, s in pairs[:limit])
    more = f" and {len(pairs) - limit} more pair(s)" if len(pairs) > limit else ""
    return (f"{len(pairs)} pair(s) of runs overlapped in time on the same machine: {shown}{more}. They shared the CPU "
            "and memory bandwidth, so their times are not those of a lone run; run one plan at a time.")


# --------------------------------------------------------------------------- background load


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class ModeLoad:
    """The mean host load a mode's runs saw (None: not recorded)."""

    runs: int
    loadavg: float | None
    other_cores: float | None
    host_cpus: int | None
    steal: float | None
    psi: float | None


def mode_load(runs: Sequence[Any]) -> ModeLoad:
    loads, other, steal, psi, cpus = [], [], [], [], []
    for r in runs:
        hl = getattr(r, "host_load", None)
        if not isinstance(hl, dict):
            continue
        la = hl.get("loadavg")
        if isinstance(la, dict) and isinstance(la.get("mean"), (int, float)):
            loads.append(float(la["mean"]))
        for key, bucket in (("other_cores", other), ("steal_fraction", steal), ("psi_cpu_some", psi),
                            ("host_cpus", cpus)):
            if isinstance(hl.get(key), (int, float)):
                bucket.append(float(hl[key]))
    return ModeLoad(len(runs), _mean(loads), _mean(other), int(max(cpus)) if cpus else None, _mean(steal), _mean(psi))


def busy_host_warnings(baseline: str, base_runs: Sequence[Any], candidate: str, cand_runs: Sequence[Any]
                       ) -> list[str]:
    """Warnings when the two modes' runs saw clearly different background load, or CPU steal."""
    b, c = mode_load(base_runs), mode_load(cand_runs)
    out = []
    cpus = b.host_cpus or c.host_cpus
    if b.other_cores is not None and c.other_cores is not None:
        threshold = max(OTHER_CORES_DIFFERENCE, OTHER_CORES_SHARE * (cpus or 1))
        if abs(b.other_cores - c.other_cores) >= threshold:
            out.append(f"The host was busier during one mode's runs: {_load_words(baseline, b, cpus)}; "
                       f"{_load_words(candidate, c, None)}. Other work competed for the CPU unevenly, so "
                       "the difference in times is partly the machine's; run again on a quiet machine.")
    elif b.loadavg is not None and c.loadavg is not None and cpus:
        # Without the CPU accounting only the load average is left; it counts the runs themselves.
        if abs(b.loadavg - c.loadavg) >= max(1.0, 2 * OTHER_CORES_SHARE * cpus):
            out.append(f"The host was busier during one mode's runs: {_load_words(baseline, b, cpus)}; "
                       f"{_load_words(candidate, c, None)}.")
    for mode, load in ((baseline, b), (candidate, c)):
        if load.steal is not None and load.steal > STEAL_NOTABLE:
            out.append(f"{mode} runs lost {load.steal * 100:.0f} % of the CPU time to other virtual machines "
                       "(steal): a noisy neighbour on the hypervisor.")
    if _psi_differs(b, c) and not (_quiet(b, cpus) and _quiet(c, cpus)):
        out.append(f"Tasks waited for a CPU {b.psi * 100:.0f} % of the time during {baseline} runs and "
                   f"{c.psi * 100:.0f} % during {candidate} runs (host CPU pressure).")
    return out


def _psi_differs(b: ModeLoad, c: ModeLoad) -> bool:
    return b.psi is not None and c.psi is not None and abs(b.psi - c.psi) >= PSI_DIFFERENCE


def _quiet(load: ModeLoad, cpus: int | None) -> bool:
    return load.other_cores is not None and load.other_cores < max(0.1, QUIET_OTHER_SHARE * (cpus or 1))


def own_pressure_note(baseline: str, base_runs: Sequence[Any], candidate: str, cand_runs: Sequence[Any]
                      ) -> str | None:
    """A diagnosis, not a fairness warning, when CPU pressure differed on a quiet host: the mode's own threads.

    Host PSI counts the run's own threads too: a mode with DataLoader workers beside its training
    loop on 2 cores makes its tasks wait for a CPU with nothing else running. Other processes'
    CPU time (measured apart from the run's) tells the two causes apart.
    """
    b, c = mode_load(base_runs), mode_load(cand_runs)
    cpus = b.host_cpus or c.host_cpus
    if not (_psi_differs(b, c) and _quiet(b, cpus) and _quiet(c, cpus)):
        return None
    (hi_mode, hi), (lo_mode, lo) = sorted(((baseline, b), (candidate, c)), key=lambda x: -(x[1].psi or 0.0))
    cores = f"the {cpus} cores" if cpus else "the cores"
    return (f"{hi_mode}'s tasks waited for a CPU {(hi.psi or 0) * 100:.0f} % of the time ({lo_mode}'s "
            f"{(lo.psi or 0) * 100:.0f} %) while other processes were nearly idle: it keeps more threads busy than "
            f"{cores} (e.g. data-loading workers beside the training loop), a cost of the mode itself.")


def _load_words(mode: str, load: ModeLoad, cpus: int | None) -> str:
    parts = []
    if load.loadavg is not None:
        parts.append(f"a load average of {load.loadavg:.1f}" + (f" on {cpus} cores" if cpus else ""))
    if load.other_cores is not None:
        parts.append(f"other processes used {load.other_cores:.1f} cores")
    return f"{mode} runs saw " + ", ".join(parts) if parts else f"{mode}: not recorded"


def annotate(comp: Any, results_dir: Path) -> None:
    """Add the overlapping-runs and busy-host warnings to a Comparison's fairness notes (and a mode's own
    CPU pressure to its diagnosis)."""
    runs = [r for mode_runs in comp.runs.values() for r in mode_runs]
    compared = [i for i in (run_interval(r) for r in runs) if i is not None]
    others = plan_intervals(results_dir, ray_machines([*runs, *comp.runs_left_out_older]))
    others += [i for i in (run_interval(r) for r in comp.runs_left_out_older) if i is not None]
    warning = overlap_warning(overlaps(compared, others))
    if warning:
        comp.fairness.append(warning)
    comp.fairness += busy_host_warnings(comp.baseline, comp.runs[comp.baseline], comp.candidate,
                                        comp.runs[comp.candidate])
    note = own_pressure_note(comp.baseline, comp.runs[comp.baseline], comp.candidate, comp.runs[comp.candidate])
    if note:
        comp.diagnosis.append(note)
