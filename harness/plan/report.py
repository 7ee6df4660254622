"""What ``harness run`` prints when it is done: the plan of a dry run, or the summary of a run. Returns text."""

from __future__ import annotations

from harness.plan.model import PlanResult
from harness.plan.sequential import describe
from harness.plan.slots import BANDWIDTH_NOTE


def render_plan_result(result: PlanResult) -> str:
    """The dry run's plan, "nothing to do", or the counts, the failed runs and how to continue."""
    plan = result.plan
    if result.dry_run:
        return _render_dry_run(result)
    if result.nothing_to_do:
        done = f"Plan {plan.plan_id}: all {len(plan.runs)} runs completed already; nothing to do."
        return f"{describe(plan.sequential)}\n{done}" if plan.sequential else done
    counts = plan.counts()
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    lines = [f"Plan {plan.plan_id}: {', '.join(parts)} of {len(plan.runs)} runs."]
    if plan.sequential:
        lines.insert(0, describe(plan.sequential))
    for run in result.failed:
        lines.append(f"  failed: {run.label} ({run.run_id}): {run.status}" + (f": {run.message}" if run.message else ""))
    if result.failed:
        lines.append(f"Details: {result.errors_log}")
    pending = counts.get("pending", 0)
    if pending:
        lines.append(f"{pending} run(s) not run; continue with `harness run --resume {plan.plan_id}`.")
    if result.slots > 1 and plan.executor == "local":
        lines.append(BANDWIDTH_NOTE)
    return "\n".join(lines)


def _render_dry_run(result: PlanResult) -> str:
    plan = result.plan
    head = "Resume" if result.resuming else "Plan"
    lines = [f"{head} {plan.plan_id} for {plan.experiment}: {len(plan.runs)} runs "
             f"({', '.join(plan.modes)} × seeds {','.join(map(str, plan.seeds))}), executor {plan.executor}, "
             f"backend {plan.options.get('backend', 'auto')}"
             + (f", {result.slots} at a time" if result.slots > 1 else "")]
    for i, run in enumerate(plan.runs, 1):
        state = "" if run.status == "pending" else \
            f"  [{run.status}{', will run again' if run.status != 'completed' else ''}]"
        lines.append(f"  {i:>3}. {run.mode:<16} seed {run.seed}{state}")
        described = result.run_settings[i - 1] if i <= len(result.run_settings) else ""
        if described:
            lines.append(f"       {described}")
    lines.extend(result.notes)
    if plan.sequential:
        design, budget = plan.sequential["design"], plan.sequential.get("budget_s")
        lines.append(f"Sequential: looks after {design['first_look']} seeds a mode and after each pair from then "
                     f"on; adds pairs up to {design['max_seeds']} seeds a mode until the verdict is resolved"
                     + (f", within a budget of {budget:g} s" if budget else "") + ".")
    lines.append("Dry run: nothing was run and no plan was saved.")
    return "\n".join(lines)
