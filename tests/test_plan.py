"""Plans: expansion, interleaving, state.json, locking, resume bookkeeping, scheduling, and real local runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.backends import RunOptions
from harness.errors import MissingDependencyError, PlanError, UsageError
from harness.experiment import load_experiment
from harness.plan import (Plan, PlanLock, interleave, list_plans, load_plan, make_plan, reconcile,
                          render_plan_result, resolve_modes, save_plan)
from harness.plan import execute as _execute
from harness.plan import resume_plan as _resume_plan


def execute(*args, **kwargs):
    """``harness run`` as the CLI does it: the live lines and then the rendered result go to ``echo``;
    returns the failed runs."""
    result = _execute(*args, **kwargs)
    if kwargs.get("echo") is not None:
        for line in render_plan_result(result).splitlines():
            kwargs["echo"](line)
    return result.failed


def resume_plan(*args, **kwargs):
    result = _resume_plan(*args, **kwargs)
    if kwargs.get("echo") is not None:
        for line in render_plan_result(result).splitlines():
            kwargs["echo"](line)
    return result.failed
from harness.plan.progress import Progress
from harness.plan.ray import task_resources
from harness.plan.ray_task import map_gpus, pack_experiment, unpack
from harness.plan.slots import GpuInfo, assign_slots, cpu_slots, format_cpuset, gpu_groups
from harness.settings import GpuRequest, RunSettings

SCRIPT_OK = "import sys; sys.exit(0)\n"
# Fails for seed 1 only: a seed that breaks must not stop the others.
SCRIPT_FAILS_SEED_1 = "import os, sys; sys.exit(3 if os.environ.get('HARNESS_SEED') == '1' else 0)\n"


def write_experiment(root: Path, scripts: dict[str, str], seeds: list[int] | None = None,
                     **config: object) -> Path:
    """A tiny experiment with hand-written scripts: runs take well under a second, no framework."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"competition": "plantest", "kaggle_slug": "plantest", "framework": "pytorch",
           "modes": {m: f"{m}.py" for m in scripts}, "seeds": seeds or [0, 1, 2],
           "sampling_interval": 0.1, "resources": {"memory": None}, **config}
    (root / "experiment_config.json").write_text(json.dumps(cfg, indent=2))
    for mode, body in scripts.items():
        (root / f"{mode}.py").write_text(body)
    return root


@pytest.fixture
def exp(tmp_path: Path):
    path = write_experiment(tmp_path / "exp", {"baseline": SCRIPT_OK, "optimization": SCRIPT_OK})
    return load_experiment(path)


# --------------------------------------------------------------------------- expansion
def test_interleave_is_seed_major() -> None:
    assert interleave(["baseline", "optimization"], [0, 1, 2]) == [
        ("baseline", 0), ("optimization", 0), ("baseline", 1), ("optimization", 1),
        ("baseline", 2), ("optimization", 2)]


def test_resolve_modes_expands_all_and_keeps_order(exp) -> None:
    assert resolve_modes(exp, ["all"]) == ["baseline", "optimization"]
    assert resolve_modes(exp, ["optimization", "baseline", "optimization"]) == ["optimization", "baseline"]


def test_unknown_mode_lists_known_ones(exp) -> None:
    with pytest.raises(UsageError) as err:
        resolve_modes(exp, ["baseline", "turbo"])
    assert str(err.value) == "unknown mode 'turbo'; this experiment has: baseline, optimization (or 'all')"


def test_make_plan_defaults_to_config_seeds(exp) -> None:
    plan = make_plan(exp, ["baseline", "optimization"])
    assert plan.seeds == [0, 1, 2]
    assert [(r.mode, r.seed, r.status) for r in plan.runs][:3] == [
        ("baseline", 0, "pending"), ("optimization", 0, "pending"), ("baseline", 1, "pending")]
    assert len(plan.runs) == 6
    stamp, digest = plan.plan_id.split("-")
    assert len(stamp) == 15 and stamp[8] == "T" and len(digest) == 6


def test_dry_run_prints_plan_and_saves_nothing(exp) -> None:
    lines: list[str] = []
    failed = execute(exp, ["all"], [0, 1], RunOptions(backend="local"), dry_run=True, echo=lines.append)
    assert failed == []
    assert lines[1:9:2] == ["    1. baseline         seed 0", "    2. optimization     seed 0",
                            "    3. baseline         seed 1", "    4. optimization     seed 1"]
    # Each run's resolved settings: gpus "auto" became none on this GPU-less machine, without a notice.
    assert set(lines[2:10:2]) == {"       backend local, image none (local process), GPUs none, cpus no limit, "
                                  "memory no limit, shm 2 GiB, network host, timeout none; a local process: cpus, "
                                  "memory and shm are not enforced"}
    assert lines[9:] == ["Dry run: nothing was run and no plan was saved."]
    assert list_plans(exp) == []
    assert not exp.results_dir.exists()


def test_resume_refuses_new_modes(exp) -> None:
    with pytest.raises(UsageError, match="drop the MODES"):
        execute(exp, ["baseline"], None, RunOptions(), resume="latest", echo=None)


def test_resume_without_plan_says_how_to_start(exp) -> None:
    with pytest.raises(PlanError) as err:
        execute(exp, [], None, RunOptions(), resume="latest", echo=None)
    assert "no plan to resume" in str(err.value)
    assert err.value.hint == "start one with `harness run baseline optimization`"


def test_address_without_ray_executor_is_a_usage_error(exp) -> None:
    with pytest.raises(UsageError, match="--address is for --executor ray"):
        execute(exp, ["baseline"], None, RunOptions(), address="127.0.0.1:6379", echo=None)


def test_ray_executor_without_ray_says_how_to_install(exp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to import
    with pytest.raises(MissingDependencyError) as err:
        execute(exp, ["baseline"], None, RunOptions(), executor="ray", echo=None)
    assert str(err.value) == "--executor ray needs Ray: pip install 'harness[ray]'"


# --------------------------------------------------------------------------- state on disk
def test_state_round_trip_and_latest(exp) -> None:
    first = make_plan(exp, ["baseline"], [0])
    save_plan(exp, first)
    second = make_plan(exp, ["all"], [4, 5])
    second.plan_id = first.plan_id[:-6] + "ffffff" if second.plan_id <= first.plan_id else second.plan_id
    second.runs[1].status = "failed"
    save_plan(exp, second)
    loaded = load_plan(exp, "latest")
    assert loaded.plan_id == second.plan_id
    assert loaded.to_dict() == second.to_dict()
    assert load_plan(exp, first.plan_id).modes == ["baseline"]
    state = json.loads((exp.results_dir / "plans" / second.plan_id / "state.json").read_text())
    assert state["runs"][1] == {**state["runs"][1], "mode": "optimization", "seed": 4, "status": "failed",
                                "attempts": 0}
    assert state["options"]["backend"] == "auto"


def test_unknown_plan_and_broken_state_are_plan_errors(exp) -> None:
    plan = make_plan(exp, ["baseline"], [0])
    path = save_plan(exp, plan)
    with pytest.raises(PlanError, match="no plan 'nope'"):
        load_plan(exp, "nope")
    path.write_text('{"runs": [{"mode": "baseline"}]')
    with pytest.raises(PlanError, match="state.json: not valid JSON: Expecting ',' delimiter"):
        load_plan(exp, plan.plan_id)
    path.write_text(json.dumps({**plan.to_dict(), "runs": [{"mode": "baseline", "seed": 0, "status": "weird"}]}))
    with pytest.raises(PlanError, match="state.json: runs.0.status: Input should be 'pending', "):
        load_plan(exp, plan.plan_id)


def test_lock_excludes_a_second_process_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from harness.plan import PlanLock
            with PlanLock(Path({str(tmp_path)!r})):
                print("locked", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PlanError, match=f"another harness process \\(pid {holder.pid}\\)"):
            with PlanLock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's flock: a stale lock never blocks a resume.
    with PlanLock(tmp_path):
        assert (tmp_path / "lock").read_text().strip() == str(os.getpid())


def _fake_run_dir(exp, mode: str, run_id: str, *, status: str | None, events: bool = True) -> Path:
    """A run folder as a crashed or finished agent leaves it: events.jsonl, maybe results.json."""
    run_dir = exp.results_dir / mode / run_id
    run_dir.mkdir(parents=True)
    if events:
        now = time.time()
        lines = [{"t": now, "m": 1.0, "type": "run_start", "run_id": run_id, "mode": mode, "seed": 0,
                  "experiment": "plantest", "command": ["python"], "pid": 999999},
                 {"t": now + 1, "m": 2.0, "type": "batch", "i": 0, "dt": 0.5, "wait": 0.1, "n": 8, "epoch": 0}]
        (run_dir / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if status is not None:
        from harness.results import write_json_atomic

        write_json_atomic(run_dir / "results.json", {
            "schema_version": 1, "experiment_name": "plantest",
            "run": {"run_id": run_id, "mode": mode, "seed": 0, "status": status, "wall_time": 1.5,
                    "ended_at": 123.0},
            "modes": {mode: {}}})
    return run_dir


def test_reconcile_counts_a_run_that_completed_and_reruns_the_rest(exp) -> None:
    plan = make_plan(exp, ["baseline", "optimization"], [0, 1])
    plan.runs[0].status, plan.runs[0].run_id = "completed", "r0"
    plan.runs[1].status, plan.runs[1].run_id = "running", "r1"  # finished though harness died
    plan.runs[2].status, plan.runs[2].run_id = "running", "r2"  # cut short
    plan.runs[3].status, plan.runs[3].run_id = "failed", "r3"
    _fake_run_dir(exp, "optimization", "r1", status="completed")
    cut = _fake_run_dir(exp, "baseline", "r2", status=None)
    _fake_run_dir(exp, "optimization", "r3", status="failed")
    todo = reconcile(exp, plan)
    assert [(r.mode, r.seed) for r in todo] == [("baseline", 1), ("optimization", 1)]
    assert plan.runs[1].status == "completed" and plan.runs[1].run_id == "r1" and plan.runs[1].wall_time == 1.5
    assert plan.runs[2].status == "pending" and plan.runs[2].run_id is None
    assert plan.runs[2].previous_run_ids == ["r2"]
    assert plan.runs[3].previous_run_ids == ["r3"]
    # The cut-short attempt keeps what it measured, marked so that compare leaves it out.
    sealed = json.loads((cut / "results.json").read_text())
    assert sealed["run"]["status"] == "interrupted"
    assert sealed["modes"]["baseline"]["batch_times"] == [[0, 0.5]]


# --------------------------------------------------------------------------- scheduling (pure)
def test_format_cpuset() -> None:
    assert format_cpuset([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert format_cpuset([3]) == "3"


def test_cpu_slots_are_disjoint() -> None:
    assert cpu_slots([0, 1], runs=6) == ["0", "1"]
    assert cpu_slots(list(range(8)), runs=3) == ["0-1", "2-3", "4-5"]
    assert cpu_slots(list(range(8)), runs=6, cores_per_run=2.5) == ["0-2", "3-5"]
    assert cpu_slots([0, 1, 2, 3], runs=1) == ["0-3"]
    with pytest.raises(UsageError, match="asks for 4 CPUs but only 2"):
        cpu_slots([0, 1], runs=2, cores_per_run=4)


def test_gpu_groups_never_share_a_gpu() -> None:
    assert gpu_groups(["0", "1", "2", "3"], 1) == [["0"], ["1"], ["2"], ["3"]]
    assert gpu_groups(["0", "1", "2", "3", "4"], 2) == [["0", "1"], ["2", "3"]]
    assert gpu_groups(["0", "1", "2", "3"], 1, busy={"1"}) == [["0"], ["2"], ["3"]]
    with pytest.raises(UsageError, match=r"needs 2 GPU\(s\) but only 1 are free \(1 busy"):
        gpu_groups(["0", "1"], 2, busy={"0"})


def test_gpu_request_forms() -> None:
    assert GpuRequest("all").pool(["0", "1"]) == (["0", "1"], 1)
    assert GpuRequest("count:2").pool(["0", "1", "2", "3"]) == (["0", "1", "2", "3"], 2)
    assert GpuRequest("1,3").pool(["0", "1", "2", "3"]) == (["1", "3"], 1)
    assert GpuRequest("none").pool(["0"]) == ([], 0)
    with pytest.raises(UsageError, match="GPU 7 is not on this machine"):
        GpuRequest("0,7").pool(["0", "1"])


def test_assign_slots_gpu_and_cpu_paths() -> None:
    gpus = [GpuInfo("0", "GPU-a"), GpuInfo("1", "GPU-b", busy=True), GpuInfo("2", "GPU-c")]
    slots, notes = assign_slots(GpuRequest("all"), gpus, [0, 1, 2, 3], runs=6, cores_per_run=None)
    assert [s.gpu_ids for s in slots] == [["0"], ["2"]] and all(s.cpuset is None for s in slots)
    assert notes[1] == "Skipping busy GPU(s) 1: other processes use them."
    slots, notes = assign_slots(GpuRequest("none"), [], [0, 1], runs=4, cores_per_run=None)
    assert [s.cpuset for s in slots] == ["0", "1"]
    assert "share the machine's memory bandwidth" in notes[-1]
    slots, notes = assign_slots(GpuRequest("none"), [], [0, 1], runs=4, cores_per_run=2)
    assert len(slots) == 1 and slots[0].cpuset is None
    with pytest.raises(UsageError, match="needs an NVIDIA driver"):
        assign_slots(GpuRequest("count:1"), [], [0, 1], runs=2, cores_per_run=None)


# --------------------------------------------------------------------------- Ray helpers (pure)
def _settings(gpus: str, cpus: float | None) -> RunSettings:
    return RunSettings(gpus=GpuRequest(gpus), cpus=cpus, memory=None, shm=2**30, network="none", ipc="private",
                       timeout=None, sampling_interval=1.0)


def test_task_resources() -> None:
    assert task_resources(_settings("none", None)) == (1.0, 0.0)
    assert task_resources(_settings("count:2", 4)) == (4.0, 2.0)
    assert task_resources(_settings("0,2", None)) == (1.0, 2.0)
    with pytest.raises(UsageError, match="--gpus all has no meaning on a Ray cluster"):
        task_resources(_settings("all", None))


def test_declared_gpus_that_do_not_exist_are_not_passed() -> None:
    # This machine has no NVIDIA driver: GPUs Ray was told about are recorded but never passed on.
    assert map_gpus([]) == (None, "")
    ids, note = map_gpus(["0", "1"])
    assert ids is None
    assert note.startswith("declared GPU ids 0,1, not passed: no such NVIDIA GPU on this node")


def test_experiment_tar_leaves_out_results_and_data(exp, tmp_path: Path) -> None:
    (exp.path / "data").mkdir()
    (exp.path / "data" / "train.csv").write_text("x\n")
    (exp.results_dir / "baseline" / "r1").mkdir(parents=True)
    (exp.path / "__pycache__").mkdir()
    (exp.path / "__pycache__" / "baseline.cpython-311.pyc").write_bytes(b"\0")
    (exp.path / "lib").mkdir()
    (exp.path / "lib" / "model.py").write_text("X = 1\n")
    top = unpack(pack_experiment(exp.path), tmp_path / "node")
    found = sorted(str(p.relative_to(top)) for p in top.rglob("*"))
    assert found == ["baseline.py", "experiment_config.json", "lib", "lib/model.py", "optimization.py"]


# --------------------------------------------------------------------------- progress
def test_progress_plain_lines_and_eta(exp) -> None:
    lines: list[str] = []
    plan = make_plan(exp, ["baseline", "optimization"], [0, 1])
    with Progress(total=4, done=0, slots=1, echo=lines.append) as progress:
        for k, run in enumerate(plan.runs[:2]):
            run.run_id, run.status, run.started = f"r{k}", "running", 100.0
            progress.start_run(run, exp.results_dir / "x")
            run.status, run.ended, run.wall_time = "completed", 100.0 + 10 * (k + 1), 9.0
            progress.end_run(run)
    assert lines == ["[1/4] baseline seed 0: started r0", "[1/4] baseline seed 0: completed in 9.0s; ETA 30s",
                     "[2/4] optimization seed 0: started r1",
                     "[2/4] optimization seed 0: completed in 9.0s; ETA 30s"]


def test_plan_survives_a_json_round_trip(exp) -> None:
    plan = make_plan(exp, ["baseline"], [0])
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())), Path("state.json"))
    assert again == plan


# --------------------------------------------------------------------------- real runs (local backend)
def _completed_per_run(exp) -> dict[tuple[str, int], int]:
    """How many completed results.json each (mode, seed) has on disk."""
    from harness.results import list_runs

    counts: dict[tuple[str, int], int] = {}
    for run in list_runs(exp.path).runs:
        if run.status == "completed":
            counts[(run.mode, run.seed)] = counts.get((run.mode, run.seed), 0) + 1
    return counts


def test_a_failing_seed_does_not_stop_the_others(tmp_path: Path) -> None:
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": SCRIPT_OK,
                                                              "optimization": SCRIPT_FAILS_SEED_1}))
    lines: list[str] = []
    from harness.compare.cache import warm

    failed = execute(exp, ["all"], [0, 1, 2], RunOptions(backend="local"), echo=lines.append,
                     on_run_completed=warm)
    assert [(r.mode, r.seed, r.status) for r in failed] == [("optimization", 1, "failed")]
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["completed", "completed", "completed", "failed", "completed",
                                             "completed"]
    assert all(r.attempts == 1 and r.backend == "local" for r in plan.runs)
    assert _completed_per_run(exp) == {(m, s): 1 for s in (0, 2) for m in ("baseline", "optimization")} | {
        ("baseline", 1): 1}
    errors = (exp.results_dir / "plans" / plan.plan_id / "errors.log").read_text().splitlines()
    assert errors[0].endswith(f"optimization seed 1 run {failed[0].run_id}: failed: exit code 3")
    assert errors[1] == f"  folder: {exp.results_dir / 'optimization' / failed[0].run_id}"
    assert f"  failed: optimization seed 1 ({failed[0].run_id}): failed: exit code 3" in lines
    assert lines[-3] == f"Plan {plan.plan_id}: 5 completed, 1 failed of 6 runs."
    # Completed runs are reduced for `harness compare` as they end; the failed one is not.
    from harness.compare.cache import cache_file

    for r in plan.runs:
        cached = cache_file(exp.path, r.mode, exp.results_dir / r.mode / r.run_id).is_file()
        assert cached == (r.status == "completed"), (r.mode, r.seed, r.status)


def test_fail_fast_stops_at_the_first_failure_and_resume_finishes(tmp_path: Path) -> None:
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": SCRIPT_OK,
                                                              "optimization": SCRIPT_FAILS_SEED_1}))
    lines: list[str] = []
    failed = execute(exp, ["all"], [1, 2], RunOptions(backend="local"), fail_fast=True, echo=lines.append)
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["completed", "failed", "pending", "pending"]
    assert [r.seed for r in failed] == [1]
    assert lines[-1] == f"2 run(s) not run; continue with `harness run --resume {plan.plan_id}`."
    # Resume finishes the plan; the failed seed runs again (and fails again), the completed one does not.
    failed = resume_plan(exp, echo=None)
    plan = load_plan(exp)
    assert [(r.status, r.attempts) for r in plan.runs] == [("completed", 1), ("failed", 2), ("completed", 1),
                                                           ("completed", 1)]
    assert len(plan.runs[1].previous_run_ids) == 1 and [r.seed for r in failed] == [1]


@pytest.mark.timeout(50)  # the script sleeps 60 s: only the per-run timeout ends it in time
def test_per_run_timeout(tmp_path: Path) -> None:
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": "import time; time.sleep(60)\n"}))
    failed = execute(exp, ["baseline"], [0], RunOptions(backend="local", timeout=1.0), echo=None)
    assert [(r.status, r.message) for r in failed] == [("timeout", "stopped at its timeout")]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _state(exp) -> dict:
    paths = list((exp.results_dir / "plans").glob("*/state.json"))
    return json.loads(paths[0].read_text()) if paths else {}


def test_sigkill_then_resume_runs_everything_exactly_once(tmp_path: Path) -> None:
    slow = "import time; time.sleep(2)\n"
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": slow, "optimization": slow}))
    harness = subprocess.Popen([sys.executable, "-m", "harness", "run", "all", "--seeds", "0,1,2",
                                "--backend", "local", "-e", str(exp.path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: [r["status"] for r in _state(exp).get("runs", [])][2:3] == ["running"], 60,
                  "the third run to start")
        time.sleep(0.5)
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    killed = _state(exp)["runs"][2]
    assert killed["status"] == "running"  # what a crash leaves behind
    lines: list[str] = []
    failed = execute(exp, [], None, RunOptions(), resume="latest", echo=lines.append)
    assert failed == []
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["completed"] * 6
    assert _completed_per_run(exp) == {(m, s): 1 for s in (0, 1, 2) for m in ("baseline", "optimization")}
    assert [r.attempts for r in plan.runs] == [1, 1, 2, 1, 1, 1]
    assert plan.runs[2].previous_run_ids == [killed["run_id"]]
    assert lines[0] == f"Resuming plan {plan.plan_id}: 4 of 6 runs (baseline, optimization × seeds 0,1,2)"
    # The cut-short attempt keeps what it recorded, marked interrupted, and its agent is gone.
    cut = json.loads((exp.results_dir / "baseline" / killed["run_id"] / "results.json").read_text())
    assert cut["run"]["status"] == "interrupted"
    events = (exp.results_dir / "baseline" / killed["run_id"] / "events.jsonl").read_text()
    pid = next(json.loads(x)["pid"] for x in events.splitlines() if '"run_start"' in x)
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_cli_exit_code_and_summary_name_the_failed_seed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli

    path = write_experiment(tmp_path / "exp", {"baseline": SCRIPT_OK, "optimization": SCRIPT_FAILS_SEED_1})
    result = CliRunner().invoke(cli, ["run", "baseline", "optimization", "--seeds", "0,1", "--backend", "local",
                                      "-e", str(path)])
    assert result.exit_code == 1, result.output
    plan = load_plan(load_experiment(path))
    failed = plan.runs[3]
    assert f"  failed: optimization seed 1 ({failed.run_id}): failed: exit code 3\n" in result.output
    assert f"Details: {path.resolve() / 'results' / 'plans' / plan.plan_id / 'errors.log'}\n" in result.output
    result = CliRunner().invoke(cli, ["run", "turbo", "-e", str(path)])
    assert result.exit_code == 2
    assert result.output.endswith("Error: unknown mode 'turbo'; this experiment has: baseline, optimization "
                                  "(or 'all')\n")


def test_ctrl_c_stops_every_parallel_run_and_exits_130(tmp_path: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("parallel CPU runs need 2 CPUs")
    slow = "import time; time.sleep(60)\n"
    exp = load_experiment(write_experiment(tmp_path / "exp", {"baseline": slow, "optimization": slow}))
    harness = subprocess.Popen([sys.executable, "-m", "harness", "run", "all", "--seeds", "0,1", "--backend",
                                "local", "--parallel", "-e", str(exp.path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: [r["status"] for r in _state(exp).get("runs", [])][:2] == ["running", "running"], 60,
                  "two runs in flight")
        _wait_for(lambda: all((exp.results_dir / r["mode"] / r["run_id"] / "events.jsonl").exists()
                              for r in _state(exp)["runs"][:2]), 60, "both agents to start")
        harness.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        out, _ = harness.communicate(timeout=60)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
    assert harness.returncode == 130, out
    assert out.endswith("Interrupted.\n")
    runs = _state(exp)["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "interrupted", "pending", "pending"]
    assert sorted(r["cpuset"] for r in runs[:2]) == ["0", "1"]
    for run in runs[:2]:
        data = json.loads((exp.results_dir / run["mode"] / run["run_id"] / "results.json").read_text())
        assert data["run"]["status"] == "interrupted"


@pytest.mark.timeout(60)  # ray.init alone would retry for minutes
def test_ray_address_that_nobody_answers_fails_fast(exp) -> None:
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PlanError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        execute(exp, ["baseline"], [0], RunOptions(backend="local"), executor="ray",
                address=f"127.0.0.1:{port}", echo=None)
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["pending"]  # nothing ran; --resume can continue it


def test_bad_resource_requests_are_refused_before_anything_is_written(exp) -> None:
    pytest.importorskip("ray")
    with pytest.raises(UsageError, match="--gpus all has no meaning on a Ray cluster"):
        execute(exp, ["all"], [0], RunOptions(gpus="all"), executor="ray", echo=None)
    with pytest.raises(UsageError, match="--gpus: must be 'auto', 'all', 'none'"):
        execute(exp, ["all"], [0], RunOptions(gpus="lots"), parallel=True, echo=None)
    assert not exp.results_dir.exists()


@pytest.mark.docker
def test_a_plan_level_error_stops_the_plan_and_leaves_it_resumable(exp, pytorch_image: str) -> None:
    # A run that cannot start (here: GPUs from an engine with no NVIDIA runtime) is the plan's problem,
    # not a seed's.
    from harness.errors import GpuRuntimeError

    with pytest.raises(GpuRuntimeError, match="no NVIDIA runtime or CDI"):
        execute(exp, ["all"], [0, 1], RunOptions(backend="docker", gpus="all"), echo=None)
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["pending"] * 4
    assert plan.runs[0].message.startswith("not started: GPUs were asked for")
    assert plan.runs[0].run_id is None and plan.runs[0].previous_run_ids == []
    assert not (exp.results_dir / "baseline").exists() or not any((exp.results_dir / "baseline").iterdir())
    assert not (exp.results_dir / "plans" / plan.plan_id / "errors.log").exists()
    # Options given with --resume override the plan's: fix the request and finish the plan.
    assert execute(exp, [], None, RunOptions(backend="local", gpus="none"), resume="latest", echo=None) == []
    plan = load_plan(exp)
    assert [r.status for r in plan.runs] == ["completed"] * 4 and plan.options["gpus"] == "none"
    assert plan.options["backend"] == "local"
    from conftest import _remove_experiment_images

    _remove_experiment_images([exp.name])
