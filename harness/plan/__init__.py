"""Many runs as one plan: seeds × modes, interleaved, resumable, continuing past failed seeds.

``model`` (Plan, PlannedRun, make_plan), ``state`` (state.json, errors.log, the lock), ``resume``,
``slots`` (parallel GPUs / cpusets), ``progress``, and the executors behind one interface
(``executor``): ``local`` and ``ray`` (+ ``ray_task``, the node side). ``run.execute`` is what
``harness run`` calls. The names most callers need are importable from here.
"""

from __future__ import annotations

from harness.plan.model import Plan, PlannedRun, PlanResult, interleave, make_plan, resolve_modes
from harness.plan.report import render_plan_result
from harness.plan.resume import reconcile
from harness.plan.run import execute, resume_plan, run_plan
from harness.plan.sequential import SequentialRequest
from harness.plan.state import PlanLock, list_plans, load_plan, save_plan

__all__ = ["Plan", "PlanLock", "PlanResult", "PlannedRun", "SequentialRequest", "execute", "interleave",
           "list_plans", "load_plan", "make_plan", "reconcile", "render_plan_result", "resolve_modes", "resume_plan", "run_plan", "save_plan"]
