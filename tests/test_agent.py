"""The agent for real: child processes, signals, timeouts, a real OOM kill in a real memory cgroup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.agent import agent_command, agent_evidence, parse_args
from harness.results import load_run
from harness.results.status import decide_status

# A training-like script: streams batches through the monitor, marks itself, can be told how to end.
TRAIN = r'''
import os, sys, time, signal
from harness.monitor import ExperimentMonitor
out = sys.argv[1]
how = sys.argv[2]
open(os.path.join(out, "child.pid"), "w").write(str(os.getpid()))
def on_term(signum, frame):
    open(os.path.join(out, "got_signal"), "w").write(str(signum))
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
m = ExperimentMonitor("agent_test")
m.start_mode(os.environ["HARNESS_MODE"], config={"batch_size": 4})
n = 20 if how in ("ok", "fail") else 100000
for i, batch in enumerate(m.batches([[1, 2, 3, 4]] * n, epoch=0)):
    time.sleep(0.01)
    m.log_loss(0, i, 1.0 / (i + 1))
    if i == 5:
        open(os.path.join(out, "running"), "w").write("1")
m.stop_mode()
if how == "fail":
    raise RuntimeError("boom")
'''


def agent_cmd(run_dir: Path, *child: str, timeout: float | None = None, extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "harness.agent", "--mode", "baseline", "--results", str(run_dir),
           "--seed", "0", "--run-id", run_dir.name, "--experiment", "agent_test", "--interval", "0.1",
           "--backend", "local", "--grace", "2"]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    return cmd + (extra or []) + ["--", *child]


@pytest.fixture
def train_script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def check_events_intact(run_dir: Path) -> list[dict]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is a whole record
    assert all({"t", "m", "type"} <= set(e) for e in events)
    return events


def test_completed_run_without_monitor_import_still_has_resources_and_no_secrets(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    env = {**os.environ, "HF_TOKEN": "hf_secret", "AWS_SECRET_ACCESS_KEY": "x", "DB_PASSWORD": "y",
           "DATABASE_URL": "postgres://me:pw@db/x", "PLAIN_SETTING": "visible"}
    proc = subprocess.run(agent_cmd(run_dir, sys.executable, "-c", "import time; time.sleep(0.5); print('hi')"),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hi"  # the child's output passes through unchanged
    data = json.loads((run_dir / "results.json").read_text())
    run = data["run"]
    assert (run["status"], run["exit_code"], run["signal"], run["error"]) == ("completed", 0, None, None)
    assert run["run_id"] == "r" and run["seed"] == 0 and run["backend"] == "local"
    assert 0.4 < run["wall_time"] < 30
    usage = data["modes"]["baseline"]["resource_usage"]
    assert len(usage["cpu_usage"]) >= 3 and len(usage["memory_bytes"]) >= 3
    assert "gpu" in usage["unavailable"]  # no GPU here: absent with a reason
    env_out = data["environment"]["env"]
    assert "PLAIN_SETTING" in data["environment"]["env_names"] and "PLAIN_SETTING" not in env_out  # name only
    for secret in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "DATABASE_URL"):
        assert secret not in env_out
    assert "hf_secret" not in (run_dir / "results.json").read_text()
    assert "hf_secret" not in (run_dir / "events.jsonl").read_text()
    manifest = data["environment"]
    assert manifest["python"] == ".".join(map(str, sys.version_info[:3]))
    assert manifest["cgroup"]["version"] in (1, 2) and manifest["seed"] == 0
    assert manifest["framework"]["name"] in ("torch", "tensorflow")


def test_monitored_script_batches_and_losses_reach_results(tmp_path: Path, train_script: Path) -> None:
    run_dir = tmp_path / "r"
    proc = subprocess.run(agent_cmd(run_dir, sys.executable, str(train_script), str(tmp_path), "ok"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    mode = json.loads((run_dir / "results.json").read_text())["modes"]["baseline"]
    assert mode["summary"]["num_batches"] == 20
    assert [b[0] for b in mode["batch_times"]] == list(range(20))
    assert all(0.009 < b[1] < 1.0 for b in mode["batch_times"])
    assert len(mode["metrics"]["losses"]) == 20
    assert mode["summary"]["throughput"] > 0 and mode["config"] == {"batch_size": 4}


def test_failing_script_gives_failed_and_its_exit_code(tmp_path: Path, train_script: Path) -> None:
    run_dir = tmp_path / "r"
    proc = subprocess.run(agent_cmd(run_dir, sys.executable, str(train_script), str(tmp_path), "fail"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr
    run = json.loads((run_dir / "results.json").read_text())["run"]
    assert (run["status"], run["exit_code"], run["error"]) == ("failed", 1, "exited with code 1")


def test_missing_command_is_a_failed_run_not_a_traceback(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    proc = subprocess.run(agent_cmd(run_dir, "/nonexistent/python"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 127
    assert "Traceback" not in proc.stderr and "cannot start" in proc.stderr
    assert json.loads((run_dir / "results.json").read_text())["run"]["status"] == "failed"


def test_sigkill_of_the_child_mid_run(tmp_path: Path, train_script: Path) -> None:
    """The child dies by SIGKILL: events.jsonl stays whole, and results.json rebuilt from it says the same."""
    run_dir = tmp_path / "r"
    agent = subprocess.Popen(agent_cmd(run_dir, sys.executable, str(train_script), str(tmp_path), "long"))
    wait_for(tmp_path / "running")
    time.sleep(1.2)  # at least one flush of the script's batches
    os.kill(int((tmp_path / "child.pid").read_text()), signal.SIGKILL)
    assert agent.wait(timeout=60) == 128 + signal.SIGKILL
    written = json.loads((run_dir / "results.json").read_text())
    assert written["run"]["status"] == "failed" and written["run"]["signal"] == "SIGKILL"
    events = check_events_intact(run_dir)
    batches = [e for e in events if e["type"] == "batch"]
    assert len(batches) >= 20  # 10 ms batches for more than a second (fewer when the box is loaded)
    assert [b["i"] for b in batches] == list(range(len(batches)))
    (run_dir / "results.json").unlink()
    rebuilt = load_run(run_dir)
    assert rebuilt.rebuilt and rebuilt.status == "failed" and rebuilt.run["signal"] == "SIGKILL"
    assert rebuilt.summary["num_batches"] == written["modes"]["baseline"]["summary"]["num_batches"]


def test_sigkill_of_agent_and_child_leaves_events_to_rebuild_from(tmp_path: Path, train_script: Path) -> None:
    """The whole container is SIGKILLed (docker kill): no results.json, a rebuilt run says interrupted."""
    run_dir = tmp_path / "r"
    agent = subprocess.Popen(agent_cmd(run_dir, sys.executable, str(train_script), str(tmp_path), "long"),
                             start_new_session=True)
    wait_for(tmp_path / "running")
    time.sleep(1.5)
    os.killpg(agent.pid, signal.SIGKILL)
    os.kill(int((tmp_path / "child.pid").read_text()), signal.SIGKILL)  # its own group
    agent.wait(timeout=30)
    assert not (run_dir / "results.json").exists()
    events = check_events_intact(run_dir)
    assert any(e["type"] == "sample" for e in events) and not any(e["type"] == "run_end" for e in events)
    run = load_run(run_dir)
    assert run.rebuilt and run.status == "interrupted" and run.run["rebuilt_from_events"] is True
    assert run.summary["num_batches"] >= 20
    assert run.run["wall_time"] > 1.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_is_forwarded_and_recorded_as_interrupted(tmp_path: Path, train_script: Path, sig: int) -> None:
    run_dir = tmp_path / "r"
    agent = subprocess.Popen(agent_cmd(run_dir, sys.executable, str(train_script), str(tmp_path), "long"),
                             stderr=subprocess.PIPE)
    wait_for(tmp_path / "running")
    agent.send_signal(sig)
    agent.wait(timeout=30)
    run = json.loads((run_dir / "results.json").read_text())["run"]
    assert run["status"] == "interrupted"
    if sig == signal.SIGTERM:  # the script's own handler saw it and exited 143
        assert (tmp_path / "got_signal").read_text() == str(int(signal.SIGTERM))
        assert run["exit_code"] == 143
    else:  # KeyboardInterrupt in the script
        assert run["exit_code"] == 1 or run["signal"] == "SIGINT"


def test_timeout_stops_the_script(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    start = time.monotonic()
    proc = subprocess.run(agent_cmd(run_dir, sys.executable, "-c", "import time; time.sleep(60)", timeout=1.0),
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 20
    run = json.loads((run_dir / "results.json").read_text())["run"]
    assert run["status"] == "timeout" and run["signal"] == "SIGTERM"
    assert proc.returncode == 128 + signal.SIGTERM
    assert "1 s timeout" in run["error"]


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = subprocess.run(agent_cmd(run_dir, sys.executable, "-c", code, timeout=0.5),
                          capture_output=True, text=True, timeout=60)
    run = json.loads((run_dir / "results.json").read_text())["run"]
    assert run["status"] == "timeout" and run["signal"] == "SIGKILL"
    assert proc.returncode == 128 + signal.SIGKILL


MEMORY_V1 = Path("/sys/fs/cgroup/memory")


def test_oom_kill_in_a_real_memory_cgroup(tmp_path: Path) -> None:
    """The agent and its child run in a 96 MiB memory cgroup (as in a container); the child exceeds it."""
    if not (MEMORY_V1.is_dir() and os.access(MEMORY_V1, os.W_OK)):
        pytest.skip("no writable cgroup v1 memory controller (the Docker tests cover OOM there)")
    cgroup = MEMORY_V1 / f"harness_oom_{os.getpid()}_{time.monotonic_ns()}"
    cgroup.mkdir()
    try:
        (cgroup / "memory.limit_in_bytes").write_text(str(96 * 2**20))
        hog = "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(8 * 2**20)); time.sleep(0.01)\n"
        run_dir = tmp_path / "r"
        inner = " ".join(f"'{a}'" for a in agent_cmd(run_dir, sys.executable, "-c", hog))
        proc = subprocess.run(["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && exec {inner}"],
                              capture_output=True, text=True, timeout=120)
        data = json.loads((run_dir / "results.json").read_text())
        assert data["run"]["status"] == "oom_killed", proc.stderr
        assert data["run"]["signal"] == "SIGKILL" and proc.returncode == 137
        assert data["environment"]["cgroup"]["memory_limit_bytes"] == 96 * 2**20
        summary = data["modes"]["baseline"]["summary"]["memory"]
        assert summary["oom_kills"] >= 1 or data["run"]["status"] == "oom_killed"
        assert summary["peak_bytes"] > 48 * 2**20
    finally:
        for _ in range(50):
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)


# -- pieces ------------------------------------------------------------------------------------

def _decide(rc: int, stop_reason: str | None, before: int | None, after: int | None, memory: dict) -> str:
    return decide_status(agent_evidence(rc, stop_reason, before, after, memory))


def test_decide_status_precedence() -> None:
    assert _decide(0, None, 0, 0, {}) == "completed"
    assert _decide(-9, None, 0, 1, {}) == "oom_killed"
    assert _decide(-9, None, None, None, {"limit": 100, "peak": 99}) == "oom_killed"
    assert _decide(-9, None, None, None, {"limit": 100, "peak": 50}) == "failed"
    assert _decide(-15, "timeout", 0, 0, {}) == "timeout"
    assert _decide(1, "interrupted", 0, 0, {}) == "interrupted"
    assert _decide(2, None, 0, 0, {}) == "failed"


def test_agent_command_is_what_the_parser_reads() -> None:
    cmd = agent_command(python="python3", command=["python3", "baseline.py"], mode="baseline", results="/results/R", run_id="R",
                        experiment="e", interval=0.5, backend="docker", config="/w/c.json", seed=3, timeout=9.0,
                        plan_id="P", image="img:1", image_id="sha256:ab")
    args = parse_args(cmd[3:])
    assert (args.mode, str(args.results), args.run_id, args.seed, args.timeout) == ("baseline", "/results/R", "R", 3, 9.0)
    assert (args.plan_id, args.image, args.image_id, args.interval) == ("P", "img:1", "sha256:ab", 0.5)
    assert args.command == ["python3", "baseline.py"] and not args.no_instrument
    bare = agent_command(python="py", command=["./run.sh", "--fast"], mode="m", results="r", run_id="R",
                         experiment="e", interval=1.0, backend="local", config="c.json", instrument=False)
    assert not {"--seed", "--timeout", "--plan-id", "--image", "--image-id"} & set(bare)
    args = parse_args(bare[3:])
    assert args.no_instrument and args.command == ["./run.sh", "--fast"]


def test_parse_args_needs_a_command() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--mode", "baseline", "--results", "x"])
    args = parse_args(["--mode", "m", "--results", "x", "--", "python", "-c", "pass"])
    assert args.command == ["python", "-c", "pass"]


def test_unwritable_results_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = subprocess.run(agent_cmd(blocker / "r", sys.executable, "-c", "pass"), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("harness.agent: cannot write the run's results")
