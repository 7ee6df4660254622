"""Sequential plans (``harness run A B --until-confident``): add seed pairs until the verdict is clear.

The plan starts with the first look's pairs (3 seeds a mode, interleaved); after each pair from
the third on it looks and either stops, with the verdict resolved, or appends the next pair, up to
``max_seeds`` or the time ``budget``. The looks themselves (repeated confidence intervals of a
group-sequential design, valid under this optional stopping: docs/statistics.md) come in as the
``decide`` callback (the CLI passes ``harness.compare.sequential_runs.look_at_runs``), so the plan
never imports compare. The decision state lives in state.json (``Plan.sequential``), rewritten with
every look and every added pair, so ``harness run --resume`` continues where the plan stood: it
never looks twice at the same seeds, and a plan that has decided stays decided.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import UsageError
from harness.plan.model import Plan, PlannedRun

# (experiment folder, modes, [(seed, baseline run id, candidate run id)], design) -> the look, with
# "seeds", "state", "stop", "resolved", "line" (where the plan stands) and "summary".
Decide = Callable[[Path, list[str], list[tuple[Any, str, str]], dict[str, Any]], dict[str, Any]]
Echo = Callable[[str], None]
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


@dataclass(frozen=True)
class SequentialRequest:
    """What ``--until-confident`` asks for: the design (from compare) and an optional time budget."""

    design: dict[str, Any]
    budget: str | None = None


def parse_budget(text: str | None) -> float | None:
    """``2h``, ``90m``, ``1h30m``, ``45s`` or plain seconds → seconds; None for no budget.

    Raises:
        UsageError: for anything else, or a budget that is not positive.
    """
    if text is None:
        return None
    value = text.strip().lower()
    match = _DURATION.fullmatch(value)
    seconds: float | None = None
    if value and match and any(match.groups()):
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    else:
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"--budget must be a duration like 2h, 90m, 1h30m or 600s (got {text!r})")
    return seconds


def new_state(request: SequentialRequest, modes: list[str]) -> dict[str, Any]:
    """state.json's ``sequential`` for a new plan of ``modes``.

    Raises:
        UsageError: unless there are exactly two modes; for a bad budget.
    """
    if len(modes) != 2:
        raise UsageError(f"--until-confident compares two modes, baseline then candidate (got {len(modes)}: "
                         f"{', '.join(modes)})", hint="e.g. harness run baseline optimization --until-confident")
    return {"design": dict(request.design), "budget_s": parse_budget(request.budget), "looks": [],
            "decision": None, "reason": ""}


def next_seeds(seeds: list[int], want: int) -> list[int]:
    """``seeds`` extended with the smallest unused integers >= 0 up to ``want`` seeds."""
    out = list(seeds)
    candidate = 0
    while len(out) < want:
        if candidate not in out:
            out.append(candidate)
        candidate += 1
    return out


def complete_pairs(runs: list[PlannedRun], modes: list[str]) -> list[tuple[Any, str, str]]:
    """(seed, baseline run id, candidate run id) for every seed both modes completed, in plan order."""
    done = {(r.mode, r.seed): r.run_id for r in runs if r.status == "completed" and r.run_id}
    seeds = list(dict.fromkeys(r.seed for r in runs))
    return [(s, done[(modes[0], s)], done[(modes[1], s)]) for s in seeds
            if (modes[0], s) in done and (modes[1], s) in done]


def spent_s(runs: list[PlannedRun]) -> float:
    """Wall time the plan's runs have taken so far (all sessions, failed attempts included)."""
    return sum(float(r.wall_time or 0.0) if r.status == "completed" else
               max(0.0, float((r.ended or r.started or 0.0) - (r.started or 0.0))) for r in runs)


def _over_budget(plan: Plan, state: dict[str, Any]) -> bool:
    """Would the next pair overrun the budget, judging by the mean pair so far?"""
    if state.get("budget_s") is None:
        return False
    pairs = max(1, len(complete_pairs(plan.runs, plan.modes)))
    spent = spent_s(plan.runs)
    return spent + spent / pairs > state["budget_s"]


def _step(experiment_dir: Path, plan: Plan, state: dict[str, Any], decide: Decide, echo: Echo | None) -> None:
    """After the pending runs: look if one is due, then stop or add the next pair."""
    design = state["design"]
    pairs = complete_pairs(plan.runs, plan.modes)
    n = min(len(pairs), design["max_seeds"])
    looked = {look["seeds"] for look in state["looks"]}
    if n >= design["first_look"] and n not in looked:
        look = decide(experiment_dir, plan.modes, pairs[:n], design)
        state["looks"].append(look)
        if echo:
            echo(look["line"])
        if look["stop"]:
            state["decision"] = look["state"]
            state["reason"] = "resolved" if look["resolved"] else f"reached --max-seeds {design['max_seeds']}"
            return
    if n >= design["max_seeds"]:
        state["decision"], state["reason"] = "unresolved", f"reached --max-seeds {design['max_seeds']}"
    elif _over_budget(plan, state):
        state["decision"], state["reason"] = "budget", f"the next pair would overrun --budget {state['budget_s']:g} s"
    else:
        seed = next_seeds(plan.seeds, len(plan.seeds) + 1)[-1]
        plan.seeds.append(seed)
        plan.runs.extend(PlannedRun(mode=mode, seed=seed) for mode in plan.modes)


def drive(experiment_dir: Path, plan: Plan, *, run_pending: Callable[[list[PlannedRun]], bool],
          save: Callable[[], None], decide: Decide, echo: Echo | None) -> dict[str, Any]:
    """Run a sequential plan to its decision: run what is pending, look, stop or add the next pair.

    ``run_pending(runs)`` runs them and says whether the plan may go on (False after Ctrl-C or
    --fail-fast); ``save()`` writes state.json, after every look and added pair. Returns the state.
    """
    state = plan.sequential
    assert state is not None
    state["reason"] = "" if state.get("decision") is None else state.get("reason", "")
    while state["decision"] is None:
        pending = [r for r in plan.runs if r.status != "completed"]
        if pending and not run_pending(pending):
            state["reason"] = "stopped before the plan decided; `harness run --resume` goes on"
            break
        failed = [r for r in plan.runs if r.status != "completed"]
        if failed:
            state["reason"] = (f"{failed[0].label} did not complete ({failed[0].status}); fix it and "
                               f"`harness run --resume` runs it again and goes on")
            break
        _step(experiment_dir, plan, state, decide, echo)
        save()
    save()
    return state


def describe(state: dict[str, Any]) -> str:
    """One line on where a sequential plan ended (or paused), for the summary."""
    last = state["looks"][-1] if state.get("looks") else None
    where = last["summary"] if last else "no look yet"
    if state.get("decision") in ("FASTER", "SLOWER", "within noise"):
        return (f"Sequential plan resolved: {where} (the interval holds under the plan's looks; "
                f"`harness compare` prints the fixed-sample one).")
    if state.get("decision"):
        return f"Sequential plan ended unresolved ({state.get('reason') or state['decision']}): {where}."
    return f"Sequential plan paused ({state.get('reason') or 'not finished'}): {where}."
