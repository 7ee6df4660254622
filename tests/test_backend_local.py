"""The local backend: the real agent as a subprocess, its status, logs, Ctrl-C and GPU masking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import start_harness_until_ready

from harness.backends import RunOptions, RunRequest, run_mode
from harness.errors import EngineUnavailableError

LOCAL = RunOptions(backend="local")


def _run(exp, mode: str = "baseline", options: RunOptions = LOCAL, **kw):
    lines: list[str] = []
    outcome = run_mode(RunRequest(experiment=exp, mode=mode, seed=0, options=options, echo=lines.append, **kw))
    return outcome, lines


def test_completed_run_writes_results_and_log(tiny_experiment):
    exp = tiny_experiment({"baseline": "import os\nprint('mode', os.environ['HARNESS_MODE'], flush=True)\n"})
    outcome, lines = _run(exp)
    assert outcome.status == "completed" and outcome.exit_code == 0 and outcome.backend == "local"
    assert outcome.run_dir == exp.results_dir / "baseline" / outcome.run_id
    assert "mode baseline" in (outcome.run_dir / "stdout.log").read_text()
    assert "mode baseline" in lines
    data = json.loads((outcome.run_dir / "results.json").read_text())
    assert data["run"]["backend"] == "local"
    assert data["run"]["status"] == "completed"
    assert data["run"]["run_id"] == outcome.run_id


def test_failing_script_is_failed_with_its_exit_code(tiny_experiment):
    exp = tiny_experiment({"baseline": "raise SystemExit(3)\n"})
    outcome, _ = _run(exp)
    assert (outcome.status, outcome.exit_code, outcome.message) == ("failed", 3, "exit code 3")
    assert json.loads((outcome.run_dir / "results.json").read_text())["run"]["status"] == "failed"


def test_bus_error_in_log_gives_shm_hint(tiny_experiment):
    exp = tiny_experiment({"baseline": "print('ERROR: Unexpected bus error encountered in worker. "
                                       "This might be caused by insufficient shared memory (shm).')\n"
                                       "raise SystemExit(1)\n"})
    outcome, _ = _run(exp)
    assert outcome.status == "failed"
    assert outcome.hint is not None and "--shm-size" in outcome.hint


def test_gpus_none_hides_devices_and_ids_map_to_cuda_visible_devices(tiny_experiment):
    script = "import os\nprint('CVD=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')), flush=True)\n"
    exp = tiny_experiment({"baseline": script})
    _, lines = _run(exp, options=RunOptions(backend="local", gpus="none"))
    assert "CVD=''" in lines
    _, lines = _run(exp, options=RunOptions(backend="local"), gpu_ids=["1", "3"])
    assert "CVD='1,3'" in lines


def test_timeout_is_recorded(tiny_experiment):
    exp = tiny_experiment({"baseline": "import time\ntime.sleep(30)\n"})
    start = time.monotonic()
    outcome, _ = _run(exp, options=RunOptions(backend="local", timeout=1.0))
    assert outcome.status == "timeout"
    assert time.monotonic() - start < 20


def test_docker_backend_without_engine_says_how_to_start_it(tiny_experiment, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # a real closed port: nothing answers
    exp = tiny_experiment({"baseline": "print('x')\n"})
    with pytest.raises(EngineUnavailableError) as err:
        _run(exp, options=RunOptions(backend="docker"))
    assert "systemctl start docker" in (err.value.hint or "")
    assert not (exp.results_dir / "baseline").exists()


def test_auto_falls_back_to_local_with_one_line(tiny_experiment, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    exp = tiny_experiment({"baseline": "print('ran')\n"})
    outcome, lines = _run(exp, options=RunOptions(backend="auto"))
    assert outcome.backend == "local" and outcome.status == "completed"
    assert lines[0] == ("No Docker engine: running as local processes, with no container isolation, because the "
                        "Docker engine at tcp://127.0.0.1:9 does not answer (connection refused); fix: start the "
                        "engine: sudo systemctl start docker (or run dockerd), or choose --backend local.")


def test_sigint_to_harness_run_records_interrupted(tiny_experiment, tmp_path):
    exp = tiny_experiment({"baseline": "import time\nprint('SCRIPT-READY', flush=True)\ntime.sleep(60)\n"})
    proc = start_harness_until_ready(["run", "baseline", "--backend", "local", "-e", str(exp.path)])
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=30)[0]
    assert time.monotonic() - start < 15, "Ctrl-C took longer than the 10 s grace"
    assert proc.returncode == 130, rest
    (run_dir,) = (exp.results_dir / "baseline").iterdir()
    assert json.loads((run_dir / "results.json").read_text())["run"]["status"] == "interrupted"
    # The script's process is gone too: no process holds the run folder's name in its command line.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert run_dir.name not in ps
    assert os.path.isdir(run_dir)


def test_sigkilled_script_reads_killed_not_oom(tiny_experiment):
    exp = tiny_experiment({"baseline": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"})
    outcome, _ = _run(exp)
    assert (outcome.status, outcome.exit_code, outcome.message) == ("failed", 137, "killed (SIGKILL)")
