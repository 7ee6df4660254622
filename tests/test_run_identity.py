"""Run identity on real runs (local backend): edit and rerun, two plans at once, the recorded parts (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from conftest import start_harness_until_ready, write_tiny_experiment
from harness.backends import RunOptions
from harness.cli import cli
from harness.compare import compare_experiment
from harness.experiment import load_experiment
from harness.plan import execute, load_plan


def _cli(*args: str) -> "object":
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "120"}, catch_exceptions=False)


def _results(exp: Path, mode: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((exp / "results" / mode).glob("*/results.json"))]


def test_edit_and_rerun_compares_only_the_new_runs(make_experiment: Callable[..., Path]) -> None:
    """Scaffold, run both modes, add a comment to optimization.py, run it again, compare."""
    path = make_experiment("edit", seeds=[0, 1])
    exp = load_experiment(path)
    assert execute(exp, ["baseline", "optimization"], None, RunOptions(backend="local"), echo=None).failed == []
    first = _results(path, "optimization")
    fp = first[0]["run"]["fingerprint"]
    assert fp["parts"]["command"] == ["python", "optimization.py"]
    assert {"baseline.py", "optimization.py", "requirements.txt"} <= set(fp["parts"]["code"])
    assert fp["parts"]["settings"]["backend"] == "local" and "torch" in fp["parts"]["runtime"]["frameworks"]
    events = [json.loads(line) for line in (path / "results" / "optimization" / first[0]["run"]["run_id"] /
                                            "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "run_start")
    assert start["fingerprint"]["hash"] == fp["hash"]
    host = first[0]["run"]["host_load"]
    assert host["host_cpus"] >= 1 and host["loadavg"]["samples"] >= 2 and host["own_cores"] > 0

    # A comment is enough: bytes are hashed (docs/statistics.md).
    script = path / "optimization.py"
    script.write_text(script.read_text() + "\n# tried a bigger prefetch\n")
    assert execute(exp, ["optimization"], None, RunOptions(backend="local"), echo=None).failed == []
    comp = compare_experiment(path)
    new_ids = {d["run"]["run_id"] for d in _results(path, "optimization")} - {d["run"]["run_id"] for d in first}
    assert {r.run_id for r in comp.runs["optimization"]} == new_ids
    assert len(comp.runs["baseline"]) == 2
    assert comp.left_out_older == [f"optimization: 2 run(s) of older code (optimization.py changed since): "
                                   f"{', '.join(sorted(d['run']['run_id'] for d in first))}"]
    result = _cli("compare", str(path), "--no-plots")
    assert result.exit_code == 0 and "Left out (older code):" in result.output
    pooled = _cli("compare", str(path), "--no-plots", "--all-runs")
    assert pooled.exit_code == 0
    assert ("--all-runs pooled optimization runs of 2 different fingerprints (2 run(s) with optimization.py "
            "changed since)") in pooled.output
    assert "optimization has 2 runs of seed 0 (runs " in pooled.output


SLEEPER = """\
import time
print("SCRIPT-READY", flush=True)
time.sleep(4)
"""


def test_a_second_plan_is_refused_unless_parallel_plans(tmp_path: Path) -> None:
    path = write_tiny_experiment(tmp_path / "two", {"baseline": SLEEPER, "optimization": SLEEPER}, name="two")
    first = start_harness_until_ready(["run", "baseline", "optimization", "--seeds", "0", "--backend", "local",
                                       "-e", str(path)])
    try:
        (plan_id,) = [p.name for p in (path / "results" / "plans").iterdir() if p.is_dir()]
        refused = _cli("run", "baseline", "--seeds", "1", "--backend", "local", "-e", str(path))
        assert refused.exit_code == 2
        assert refused.stderr.splitlines()[0] == (
            f"Error: plan {plan_id} is running in this experiment (pid {first.pid}); a second plan at the same "
            "time would share the machine with it and skew both")
        assert refused.stderr.splitlines()[1].startswith("hint: wait for it to finish, or pass --parallel-plans")
        assert [p.name for p in (path / "results" / "plans").iterdir() if p.is_dir()] == [plan_id]  # nothing written
        both = _cli("run", "baseline", "optimization", "--seeds", "1", "--backend", "local", "--parallel-plans",
                    "-e", str(path))
        assert both.exit_code == 0, both.output
    finally:
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    comp = compare_experiment(path)
    warn = [f for f in comp.fairness if "overlapped in time on the same machine" in f]
    assert len(warn) == 1, comp.fairness
    (second_id,) = [p.name for p in (path / "results" / "plans").iterdir() if p.is_dir() and p.name != plan_id]
    assert f"plans {plan_id} and {second_id}" in warn[0] or f"plans {second_id} and {plan_id}" in warn[0], warn


@pytest.mark.timeout(300)
def test_an_edit_during_a_plan_is_recorded_as_an_error(tmp_path: Path) -> None:
    """optimization.py edited while the plan runs: the later runs are errors, and compare leaves them out."""
    editing = """\
import pathlib, time
print("SCRIPT-READY", flush=True)
time.sleep(1)
"""
    path = write_tiny_experiment(tmp_path / "mid", {"baseline": editing, "optimization": editing}, name="mid")
    proc = start_harness_until_ready(["run", "optimization", "--seeds", "0,1,2", "--backend", "local",
                                      "-e", str(path)])
    try:
        (path / "optimization.py").write_text(editing + "# edited mid-plan\n")
    finally:
        out, _ = proc.communicate(timeout=120)
    assert "the code or settings changed while this plan ran (optimization.py changed)" in out
    plan = load_plan(load_experiment(path))
    changed = [r for r in plan.runs if "changed while this plan ran" in r.message]
    assert [r.seed for r in changed] == [1, 2]
    errors = (path / "results" / "plans" / plan.plan_id / "errors.log").read_text()
    assert "optimization.py changed" in errors
    # state.json keeps the plan's fingerprint per mode, and --resume accepts it.
    again = execute(load_experiment(path), [], None, RunOptions(), resume=plan.plan_id, echo=None)
    assert again.nothing_to_do and list(again.plan.fingerprints) == ["optimization"]
    assert again.plan.fingerprints["optimization"]["hash"] == plan.fingerprints["optimization"]["hash"]
    assert execute(load_experiment(path), ["baseline"], [0, 1], RunOptions(backend="local"), echo=None).failed == []
    comp = compare_experiment(path)
    assert [r.seed for r in comp.runs["optimization"]] == [0]
    assert sum("while plan" in line for line in comp.left_out_older) == 2


@pytest.mark.docker
def test_a_container_run_records_its_image_and_the_same_command_as_a_local_run(pytorch_image, tiny_experiment):
    """The agent in the container records what the backend computed: image id, command, host load."""
    import docker

    from harness.backends import RunRequest, run_mode

    exp = tiny_experiment({"baseline": "import time\nprint('hi')\ntime.sleep(1.5)\n"}, name="cfingerprint")
    docker_run = run_mode(RunRequest(experiment=exp, mode="baseline", seed=0, options=RunOptions(backend="docker"),
                                     echo=None))
    local_run = run_mode(RunRequest(experiment=exp, mode="baseline", seed=0, options=RunOptions(backend="local"),
                                    echo=None))
    assert docker_run.status == local_run.status == "completed"
    inside = json.loads((docker_run.run_dir / "results.json").read_text())["run"]
    outside = json.loads((local_run.run_dir / "results.json").read_text())["run"]
    client = docker.from_env()
    image_id = client.images.get(inside["image"]).id
    client.close()
    fp = inside["fingerprint"]
    assert fp["parts"]["runtime"] == {"image_id": image_id}
    assert fp["parts"]["command"] == outside["fingerprint"]["parts"]["command"] == ["python", "baseline.py"]
    assert fp["parts"]["code"] == outside["fingerprint"]["parts"]["code"]
    assert fp["parts"]["settings"]["backend"] == "docker" and fp["hash"] != outside["fingerprint"]["hash"]
    load = inside["host_load"]
    assert load["loadavg"]["samples"] >= 2 and load["host_cpus"] >= 1 and 0 <= load["steal_fraction"] <= 1
