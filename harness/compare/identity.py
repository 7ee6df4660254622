"""Which runs of a mode are compared: one fingerprint per mode, older code left out and named.

The most common workflow is "edit optimization.py, run again, compare". Runs made before the
edit measure other code; pooling them with the new ones gave "no significant difference" where
the new runs alone were clearly FASTER. So by default each mode keeps the runs of its newest
fingerprint that has completed runs (the fingerprint of its most recently started run), and the
others are listed with what differs. ``--all-runs`` pools them anyway, with a fairness warning.

A file edited while a plan ran gives that plan two fingerprints for one mode: the runs after the
change are errors (the plan meant to measure one thing) and are never compared.
Runs without a fingerprint (made by an older harness) count as one fingerprint of their own.
Each machine of a Ray cluster runs its own image or interpreter and picks its own backend and
GPUs: runs on different machines are alike when the rest of their fingerprints agrees (the
hardware difference is compare/nodes.py's to name); on one machine the whole fingerprint counts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.compare.nodes import machine
from harness.fingerprint import differences, identity_keys


def _keys(run: Any) -> tuple[str | None, str | None]:
    return identity_keys(getattr(run, "fingerprint", None))


@dataclass
class ModeSelection:
    """One mode's runs after choosing by fingerprint."""

    mode: str
    used: list[Any]
    older: list[tuple[Any, list[str]]] = field(default_factory=list)  # run, what differs from the used code
    changed_in_plan: list[tuple[Any, str, list[str]]] = field(default_factory=list)  # run, plan id, what changed
    mixed: list[tuple[Any, list[str]]] = field(default_factory=list)  # --all-runs: used runs of older code

    def left_out_lines(self) -> list[str]:
        """'Left out (older code)' lines: one per group of runs with the same differences."""
        groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
        for run, diff in self.older:
            groups[tuple(diff)].append(run)
        lines = []
        for diff, runs in groups.items():
            ids = ", ".join(r.run_id for r in runs)
            lines.append(f"{self.mode}: {len(runs)} run(s) of older code ({'; '.join(diff)} since): {ids}")
        for run, plan_id, diff in self.changed_in_plan:
            lines.append(f"{self.mode} run {run.run_id}: the code changed while plan {plan_id} ran "
                         f"({'; '.join(diff)}); runs after the change are not compared")
        return lines


def _sort_key(run: Any) -> tuple[float, str]:
    started = getattr(run, "started_at", None)
    return (started if started is not None else float("-inf"), run.run_id)


def changed_in_plan(runs: Sequence[Any]) -> list[tuple[Any, str, list[str]]]:
    """Runs unlike the first run of the same mode in the same plan (on their machine: see ``_alike``)."""
    by_plan: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        plan_id = getattr(run, "plan_id", None)
        if plan_id:
            by_plan[plan_id].append(run)
    out = []
    for plan_id, plan_runs in by_plan.items():
        plan_runs = sorted(plan_runs, key=_sort_key)
        first = plan_runs[0]
        firsts: dict[str | None, Any] = {}  # machine -> the plan's first run of the first code there
        for run in plan_runs:
            ref = firsts.setdefault(machine(run), run) if _keys(run)[0] == _keys(first)[0] else first
            if not _alike(run, ref):
                out.append((run, plan_id, differences(ref.fingerprint, run.fingerprint)))
    return out


def _alike(run: Any, ref: Any) -> bool:
    """Same code and settings; and, on the reference's machine, the same image or interpreter.

    Each machine of a Ray cluster runs its own image (or interpreter) and picks its own backend
    and GPUs; runs on two machines measure the same thing when the rest agrees.
    """
    (code, decided), (ref_code, ref_decided) = _keys(run), _keys(ref)
    return code == ref_code and (decided == ref_decided or machine(run) != machine(ref))


def _references(runs: Sequence[Any], newest: Any) -> dict[str | None, Any]:
    """machine -> the newest run there with the newest run's code (``runs`` oldest first)."""
    out: dict[str | None, Any] = {}
    for run in runs:
        if _keys(run)[0] == _keys(newest)[0]:
            out[machine(run)] = run
    return out


def select_runs(mode: str, runs: Sequence[Any], all_runs: bool = False) -> ModeSelection:
    """Choose the runs of ``mode`` to compare (see the module docstring)."""
    bad = changed_in_plan(runs)
    bad_ids = {r.run_id for r, _, _ in bad}
    good = sorted((r for r in runs if r.run_id not in bad_ids), key=_sort_key)
    if not good:
        return ModeSelection(mode, [], changed_in_plan=bad)
    refs = _references(good, good[-1])
    used, other = [], []
    for run in good:
        ref = refs.get(machine(run), good[-1])
        if _alike(run, ref):
            used.append(run)
        else:
            other.append((run, differences(run.fingerprint, ref.fingerprint)))
    if all_runs:
        return ModeSelection(mode, good, changed_in_plan=bad, mixed=other)
    return ModeSelection(mode, used, older=other, changed_in_plan=bad)


def one_fingerprint(runs: Sequence[Any]) -> bool:
    """True when the runs measured one thing: one code, one image or interpreter per machine (the paired
    test needs that)."""
    if len({_keys(r)[0] for r in runs}) > 1:
        return False
    per_machine: dict[str | None, set[str | None]] = defaultdict(set)
    for run in runs:
        per_machine[machine(run)].add(_keys(run)[1])
    return all(len(keys) <= 1 for keys in per_machine.values())


def pooled_warning(selection: ModeSelection) -> str | None:
    """With --all-runs: the fairness warning naming what differs between the pooled runs."""
    if not selection.mixed:
        return None
    groups: dict[tuple[str, ...], int] = defaultdict(int)
    for _, diff in selection.mixed:
        groups[tuple(diff)] += 1
    kinds = 1 + len({_keys(run) for run, _ in selection.mixed})
    parts = [f"{n} run(s) with {'; '.join(diff)} since" for diff, n in groups.items()]
    return (f"--all-runs pooled {selection.mode} runs of {kinds} different fingerprints "
            f"({', '.join(parts)}): they measured different code or settings, so the verdict mixes them.")


def duplicate_seed_warnings(selection: ModeSelection, name_runs: bool) -> list[str]:
    """A seed that appears twice in one mode's compared runs: same work measured twice, or two versions."""
    by_seed: dict[int, list[Any]] = defaultdict(list)
    for run in selection.used:
        if run.seed is not None:
            by_seed[run.seed].append(run)
    out = []
    for seed, runs in sorted(by_seed.items()):
        if len(runs) < 2:
            continue
        which = f" (runs {', '.join(r.run_id for r in runs)})" if name_runs else ""
        out.append(f"{selection.mode} has {len(runs)} runs of seed {seed}{which}: a seed counted twice weighs "
                   "twice; run distinct seeds (harness run --seeds).")
    return out


def cross_mode_warning(baseline: ModeSelection, candidate: ModeSelection) -> str | None:
    """Shared files that differ between the two modes' compared runs (the candidate's own script aside).

    The template's optimization.py imports baseline.py: when baseline.py changed and only one mode
    ran again, the two modes ran different versions of the shared code.
    """
    if not baseline.used or not candidate.used:
        return None
    fb, fc = baseline.used[-1].fingerprint, candidate.used[-1].fingerprint
    if not isinstance(fb, dict) or not isinstance(fc, dict):
        return None
    cb = (fb.get("parts") or {}).get("code") or {}
    cc = (fc.get("parts") or {}).get("code") or {}
    own = {_script(fc, candidate.mode)}
    differ = sorted(p for p in set(cb) | set(cc) if cb.get(p) != cc.get(p) and p not in own)
    if not differ:
        return None
    shown = ", ".join(differ[:4]) + (f" and {len(differ) - 4} more" if len(differ) > 4 else "")
    return (f"{baseline.mode} and {candidate.mode} ran different versions of {shown}: the file changed between "
            f"their runs; if {candidate.mode} uses it, run both modes again so they share the code.")


def _script(fp: dict[str, Any], mode: str) -> str | None:
    """The candidate's own script, from its command (the first .py argument)."""
    command = (fp.get("parts") or {}).get("command") or []
    return next((a for a in command if isinstance(a, str) and a.endswith(".py")), None)


def annotate(comp: Any, selections: Sequence[ModeSelection]) -> None:
    """Add what the choice of runs means to a Comparison: left-out lines, pooling and seed warnings."""
    for sel in selections:
        comp.left_out_older += sel.left_out_lines()
        comp.runs_left_out_older += [run for run, _ in sel.older] + [run for run, _, _ in sel.changed_in_plan]
        pooled = pooled_warning(sel)
        if pooled:
            comp.fairness.append(pooled)
        comp.warnings += duplicate_seed_warnings(sel, name_runs=True)
    if len(selections) == 2:
        shared = cross_mode_warning(selections[0], selections[1])
        if shared:
            comp.fairness.append(shared)
