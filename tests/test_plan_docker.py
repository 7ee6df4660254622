"""Plans on the real Docker engine: SIGKILL of ``harness run`` then resume, and parallel runs on cpusets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import RunOptions
from harness.experiment import load_experiment
from harness.plan import load_plan


from test_plan import execute, _completed_per_run, _state, _wait_for, write_experiment

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def framework_image(pytorch_image: str):
    """harness/pytorch (conftest builds it once per session); our experiment images go afterwards."""
    from conftest import _remove_experiment_images

    yield pytorch_image
    _remove_experiment_images(["plantest"])


def _plan_containers(plan_id: str) -> list:
    from harness.engine import list_containers

    return list_containers(include_stopped=True, plan_id=plan_id)


def test_sigkill_mid_plan_then_resume_on_docker(tmp_path: Path, framework_image: str) -> None:
    # Each run records a few batches, so the cut-short attempt has measurements to keep.
    script = ("import os, time, json\n"
              "from harness.monitor.events import EventWriter\n"
              "w = EventWriter(os.environ['HARNESS_EVENTS_FILE'])\n"
              "for i in range(12):\n"
              "    time.sleep(0.25); w.emit('batch', i=i, dt=0.25, wait=0.0, n=8, epoch=0); w.flush()\n"
              "w.close()\n")
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": script, "optimization": script}))
    harness = subprocess.Popen([sys.executable, "-m", "harness", "run", "all", "--seeds", "0,1,2",
                                "--backend", "docker", "-e", str(exp.path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: [r["status"] for r in _state(exp).get("runs", [])][2:3] == ["running"], 300,
                  "the third run to start")
        plan_id = _state(exp)["plan_id"]
        _wait_for(lambda: any(c.status == "running" for c in _plan_containers(plan_id)), 60,
                  "the third run's container")
        time.sleep(1.5)
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    killed = _state(exp)["runs"][2]
    assert killed["status"] == "running"
    assert [c.run_id for c in _plan_containers(plan_id)] == [killed["run_id"]]  # nobody removed it

    lines: list[str] = []
    failed = execute(exp, [], None, RunOptions(), resume="latest", echo=lines.append)
    assert failed == []
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["completed"] * 6
    assert _completed_per_run(exp) == {(m, s): 1 for s in (0, 1, 2) for m in ("baseline", "optimization")}
    assert all(r.backend == "docker" for r in plan.runs)
    assert _plan_containers(plan_id) == []  # no container left behind
    assert "Removed 1 leftover container(s) of plan" in lines[0] or plan.runs[2].message.startswith("completed")
    if plan.runs[2].previous_run_ids:
        # Cut short: what it measured is kept, marked interrupted, and compare leaves it out.
        cut = exp.results_dir / "baseline" / killed["run_id"]
        sealed = json.loads((cut / "results.json").read_text())
        assert sealed["run"]["status"] == "interrupted"
        assert len(sealed["modes"]["baseline"]["batch_times"]) >= 1
    for run in plan.runs:
        data = json.loads((exp.results_dir / run.mode / run.run_id / "results.json").read_text())
        assert data["run"]["plan_id"] == plan_id
        assert len(data["modes"][run.mode]["batch_times"]) == 12


def test_parallel_cpu_runs_get_disjoint_cpusets(tmp_path: Path, framework_image: str) -> None:
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    script = ("import os, time\n"
              "print('cpus', sorted(os.sched_getaffinity(0)), flush=True)\n"
              "time.sleep(3)\n")
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": script, "optimization": script}))
    lines: list[str] = []
    failed = execute(exp, ["all"], [0], RunOptions(backend="docker"), parallel=True, echo=lines.append)
    assert failed == []
    plan = load_plan(exp)
    cpusets = sorted(r.cpuset for r in plan.runs)
    assert cpusets == ["0", "1"]
    spans = []
    for run in plan.runs:
        out = (exp.results_dir / run.mode / run.run_id / "stdout.log").read_text()
        assert f"cpus [{run.cpuset}]" in out
        data = json.loads((exp.results_dir / run.mode / run.run_id / "results.json").read_text())
        assert data["run"]["parallel"]["runs_at_once"] == 2 and data["run"]["parallel"]["cpuset"] == run.cpuset
        spans.append((data["run"]["started_at"], data["run"]["ended_at"]))
    # They really ran at the same time.
    assert max(s for s, _ in spans) < min(e for _, e in spans)
    assert any("share the machine's memory bandwidth" in line for line in lines)
