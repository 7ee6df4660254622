"""Sequential plans on recorded runs: the driver's looks, stops, budget, and resume from state.json.

The runs are "recorded": each one the driver asks for is written as results.json by the synthetic
generator of the compare tests (a known truth, 2 % run-to-run noise, 600 batches), so the decision
flow is tested through the real loading and reduction without waiting for real training.
The real CLI with real runs is in test_cli_sequential.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.results.synth import make_run
from harness.compare import sequential as seq
from harness.compare.sequential_runs import design_for, look_at_runs
from harness.errors import UsageError
from harness.experiment import load_experiment
from harness.plan import PlannedRun, SequentialRequest, make_plan
from harness.plan import sequential as ps
from harness.results import columnar

MODES = ["baseline", "optimization"]


def _experiment(tmp_path: Path):
    root = tmp_path / "exp"
    root.mkdir()
    (root / "experiment_config.json").write_text(json.dumps({
        "competition": "seq", "kaggle_slug": "seq", "framework": "pytorch",
        "modes": {m: f"{m}.py" for m in MODES}, "seeds": [0, 1, 2]}))
    return load_experiment(root)


def _plan(experiment, max_seeds: int, budget: str | None = None):
    """A real plan (not saved) with a sequential state, as `harness run --until-confident` makes it."""
    plan = make_plan(experiment, list(MODES), [0, 1, 2])
    plan.sequential = ps.new_state(SequentialRequest(design_for(max_seeds), budget), plan.modes)
    return plan


class State:
    """state.json as the driver leaves it: a JSON round trip of what it saved last."""

    def __init__(self, plan) -> None:
        self.plan = plan
        self.saved: dict | None = None

    def save(self) -> None:
        self.saved = json.loads(json.dumps(self.plan.to_dict()))


def recorder(experiment, slower: float, seed: int = 0, fail: tuple[str, int] | None = None):
    """run_pending that 'runs' each run by writing a recorded results.json (candidate ``slower``)."""
    rng = np.random.default_rng(seed)
    calls: list[list[str]] = []

    def run_pending(runs: list[PlannedRun]) -> bool:
        calls.append([r.label for r in runs])
        for run in runs:
            run.run_id = f"r-{run.mode}-{run.seed}-{len(calls)}"
            if fail == (run.mode, run.seed) and len(calls) == 1:
                run.status = "failed"
                continue
            step = 0.05 * (1 + slower) if run.mode == "optimization" else 0.05
            doc = make_run(mode=run.mode, seed=run.seed, n_batches=600, step=step, run_sd=0.02, rng=rng,
                           run_id=run.run_id, started_at=1.7e9)
            path = experiment.results_dir / run.mode / run.run_id / "results.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(doc))
            columnar.write(path.parent, doc)
            run.status, run.wall_time = "completed", doc["run"]["wall_time"]
        return True

    return run_pending, calls


def _drive(experiment, plan, run_pending, echo=None) -> dict:
    state = State(plan)
    out = ps.drive(experiment.path, plan, run_pending=run_pending, save=state.save, decide=look_at_runs, echo=echo)
    assert state.saved is not None and state.saved["sequential"] == json.loads(json.dumps(out))
    return out


def _seeds(state: dict) -> list[int]:
    return [look["seeds"] for look in state["looks"]]


def test_a_20_percent_slowdown_is_settled_at_the_first_look(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    plan = _plan(experiment, 10)
    lines: list[str] = []
    run_pending, calls = recorder(experiment, slower=0.20)
    state = _drive(experiment, plan, run_pending, lines.append)
    assert state["decision"] == seq.SLOWER and _seeds(state) == [3] and state["reason"] == "resolved"
    assert len(plan.runs) == 6 and len(calls) == 1
    assert lines == [state["looks"][0]["line"]]
    assert lines[0].startswith("after 3 seeds: \u2212") and lines[0].endswith("resolved: SLOWER")
    look = state["looks"][0]
    assert look["low"] < 1 / 1.2 < look["high"] < 1 / 1.2 * 1.1
    assert ps.describe(state).startswith("Sequential plan resolved: SLOWER, speed \u2212")


def test_an_aa_plan_goes_to_the_maximum_or_into_the_band_never_faster_or_slower(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    plan = _plan(experiment, 5)
    run_pending, calls = recorder(experiment, slower=0.0, seed=3)
    state = _drive(experiment, plan, run_pending)
    assert state["decision"] in (seq.UNRESOLVED, seq.IN_BAND)
    assert all(look["state"] not in (seq.FASTER, seq.SLOWER) for look in state["looks"])
    seeds = _seeds(state)
    assert seeds == list(range(3, seeds[-1] + 1)) and seeds[-1] <= 5
    assert plan.seeds == list(range(seeds[-1]))  # one pair added per look that went on
    assert len(calls) == len(seeds)  # one pair at a time after the first look


def test_resume_continues_from_the_saved_state_and_never_looks_twice(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    plan = _plan(experiment, 6)
    run_pending, _ = recorder(experiment, slower=0.0, seed=5)

    def interrupted(runs: list[PlannedRun]) -> bool:  # Ctrl-C (or --fail-fast) during the 5th pair
        return False if runs[0].seed == 4 else run_pending(runs)

    state = _drive(experiment, plan, interrupted)
    assert state["decision"] is None and _seeds(state) == [3, 4] and "--resume" in state["reason"]
    assert ps.describe(state).startswith("Sequential plan paused (stopped before the plan decided")
    resumed = type(plan).from_dict(json.loads(json.dumps(plan.to_dict())), tmp_path / "state.json")
    state = _drive(experiment, resumed, run_pending)
    assert _seeds(state)[:3] == [3, 4, 5] and len(set(_seeds(state))) == len(_seeds(state))
    assert state["decision"] is not None
    again = type(plan).from_dict(json.loads(json.dumps(resumed.to_dict())), tmp_path / "state.json")
    assert _drive(experiment, again, run_pending) == state  # decided stays decided, nothing runs
    assert len(again.runs) == len(resumed.runs)


def test_a_failed_run_pauses_the_plan_until_resume(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    plan = _plan(experiment, 10)
    run_pending, _ = recorder(experiment, slower=0.2, fail=("optimization", 1))
    state = _drive(experiment, plan, run_pending)
    assert state["decision"] is None and state["looks"] == []
    assert "optimization seed 1 did not complete (failed)" in state["reason"]
    assert ps.describe(state).startswith("Sequential plan paused (optimization seed 1")


def test_the_budget_stops_before_a_pair_that_would_not_fit(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    # Each recorded run takes ~31 s of wall time; 3 pairs ~ 186 s: a 200 s budget has no room for a 4th.
    plan = _plan(experiment, 10, budget="200s")
    run_pending, _ = recorder(experiment, slower=0.0, seed=9)
    state = _drive(experiment, plan, run_pending)
    assert state["decision"] == "budget" and "overrun --budget 200 s" in state["reason"]
    assert len(plan.runs) == 6 and [look["state"] for look in state["looks"]] == [seq.CONTINUE]
    assert ps.spent_s(plan.runs) < 200 < ps.spent_s(plan.runs) * 4 / 3


def test_budget_and_arguments_are_checked() -> None:
    assert ps.parse_budget("2h") == 7200 and ps.parse_budget("1h30m") == 5400 and ps.parse_budget("90s") == 90
    assert ps.parse_budget("600") == 600 and ps.parse_budget(None) is None
    for bad in ("", "2 hours", "-5", "0", "h"):
        with pytest.raises(UsageError, match="--budget must be a duration"):
            ps.parse_budget(bad)
    with pytest.raises(UsageError, match="--max-seeds must be at least 3"):
        design_for(2)
    with pytest.raises(UsageError, match="compares two modes"):
        ps.new_state(SequentialRequest(design_for(None)), ["baseline"])
    assert ps.next_seeds([5, 0], 4) == [5, 0, 1, 2]
    assert design_for(None)["max_seeds"] == 10
