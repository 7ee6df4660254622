"""Faults from outside a run: a kill that is not a Ctrl-C, a full disk, a results.json made a folder.

Each is a failed run, recorded as such; the plan goes on, harness prints no traceback and exits 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from runs import harness, one_error_line, own_pytorch_image, pid_alive, plan_state, results_of, \
    start_harness, wait_for, write_experiment  # noqa: F401 (own_pytorch_image is a fixture)

# Long enough to be killed in the middle; every seed writes its pid for the orphan check.
SLOW = ("import os, sys, time\n"
        "open(os.path.join(os.environ['HARNESS_RESULTS_DIR'], 'script.pid'), 'w').write(str(os.getpid()))\n"
        "print('SCRIPT-READY', flush=True)\n"
        "time.sleep(float(os.environ.get('SLEEP', '4')))\n")


def _running_run(exp: Path, index: int) -> dict | None:
    runs = plan_state(exp).get("runs", [])
    if len(runs) > index and runs[index]["status"] == "running":
        return runs[index]
    return None


def _check_plan_went_on(proc: subprocess.Popen[str], exp: Path, killed_index: int) -> dict:
    output, _ = proc.communicate(timeout=600)
    one_error_line(output)
    assert "Interrupted." not in output, output
    assert proc.returncode == 1, output
    runs = plan_state(exp)["runs"]
    assert [r["status"] for r in runs] == ["completed" if i != killed_index else "failed" for i in range(3)], runs
    killed = runs[killed_index]
    assert "kill" in killed["message"].lower(), killed
    errors = list((exp / "results" / "plans").glob("*/errors.log"))
    assert errors and killed["run_id"] in errors[0].read_text()
    data = results_of(exp, "baseline", killed["run_id"])
    assert data["run"]["status"] == "failed"
    return killed


@pytest.mark.docker
def test_docker_kill_of_one_run_fails_that_run_and_the_plan_goes_on(tmp_path: Path, own_pytorch_image: str) -> None:
    from conftest import _remove_experiment_images

    from harness.engine import list_containers

    exp = write_experiment(tmp_path / "exp", {"baseline": SLOW}, name="outsidekill", seeds=[0, 1, 2],
                           base_image=own_pytorch_image)
    proc = start_harness(["run", "baseline", "--backend", "docker", "-e", str(exp)])
    try:
        run = wait_for(lambda: _running_run(exp, 1), 300, "seed 1 to start")
        info = wait_for(lambda: [c for c in list_containers(run_id=run["run_id"]) if c.status == "running"], 120,
                        "seed 1's container")[0]
        wait_for(lambda: (exp / "results" / "baseline" / run["run_id"] / "script.pid").exists(), 120,
                 "seed 1's script")
        subprocess.run(["docker", "kill", info.id], check=True, capture_output=True)
        _check_plan_went_on(proc, exp, 1)
        assert list_containers(include_stopped=True, plan_id=plan_state(exp)["plan_id"]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _remove_experiment_images(["outsidekill"])


def test_kill_9_of_a_local_agent_fails_that_run_kills_its_script_and_the_plan_goes_on(tmp_path: Path) -> None:
    import psutil

    exp = write_experiment(tmp_path / "exp", {"baseline": SLOW}, name="outsidekilllocal", seeds=[0, 1, 2])
    proc = start_harness(["run", "baseline", "--backend", "local", "-e", str(exp)],
                         env=dict(os.environ, SLEEP="30"))  # seed 1's script would outlive the plan
    script_pid = None
    try:
        run = wait_for(lambda: _running_run(exp, 1), 120, "seed 1 to start")
        pid_file = exp / "results" / "baseline" / run["run_id"] / "script.pid"
        script_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120, "seed 1's script"))
        agents = [p for p in psutil.process_iter(["cmdline"])
                  if "harness.agent" in (p.info["cmdline"] or []) and run["run_id"] in p.info["cmdline"]]
        assert len(agents) == 1
        os.kill(agents[0].pid, signal.SIGKILL)
        # The other seeds sleep 30 s too; the check is that they run to the end after the kill.
        _check_plan_went_on(proc, exp, 1)
        assert not pid_alive(script_pid), "the killed agent's script runs on as an orphan"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if script_pid and pid_alive(script_pid):
            os.kill(script_pid, signal.SIGKILL)


# --------------------------------------------------------------------------- full disk
FILLS_THE_DISK = r'''
import os, time
from harness.monitor.events import EventWriter
out = os.environ["HARNESS_RESULTS_DIR"]
w = EventWriter(os.environ["HARNESS_EVENTS_FILE"])
w.emit("batch", i=0, dt=0.1, wait=0.0, n=8, epoch=0); w.flush()
# A checkpoint that fills the results folder's filesystem to the last byte.
with open(os.path.join(out, "checkpoint.bin"), "wb", buffering=0) as f:
    try:
        while True:
            f.write(b"x" * 65536)
    except OSError:
        pass
    try:
        while True:
            f.write(b"x")
    except OSError:
        pass
# Training goes on while every write of the monitor fails.
for i in range(1, 40):
    time.sleep(0.05)
    w.emit("batch", i=i, dt=0.05, wait=0.0, n=8, epoch=0)
    w.flush()
w.close()
print("TRAINING-DONE", flush=True)
'''


@contextlib.contextmanager
def small_tmpfs(mount: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs at ``mount`` (root only), unmounted afterwards."""
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _full_disk_run(tmp_path: Path, backend: str, name: str, **config: object) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root); no loop device is tried either")
    exp = write_experiment(tmp_path / "exp", {"baseline": FILLS_THE_DISK}, name=name, **config)
    with small_tmpfs(exp / "results"):  # the results folder lives on the small filesystem
        proc = harness(["run", "baseline", "--backend", backend, "-e", str(exp)])
        one_error_line(proc.stdout)
        assert proc.returncode == 1, proc.stdout
        assert "TRAINING-DONE" in proc.stdout, proc.stdout  # the script was not killed by its monitor
        assert "no space left on device" in proc.stdout, proc.stdout
        run = plan_state(exp)["runs"][0]
        assert run["status"] == "failed", run
        assert run["results_incomplete"] == "no space left on device", run
        data = results_of(exp, "baseline", run["run_id"])
        assert data["run"]["results_incomplete"] == "no space left on device"
        assert data["run"]["status"] == "failed"
        assert data["run"]["exit_code"] == 0  # the script itself ended well


@pytest.mark.docker
def test_full_disk_in_docker_is_an_incomplete_failed_run(tmp_path: Path, own_pytorch_image: str) -> None:
    from conftest import _remove_experiment_images

    try:
        _full_disk_run(tmp_path, "docker", "fulldisk", base_image=own_pytorch_image)
    finally:
        _remove_experiment_images(["fulldisk"])


def test_full_disk_in_a_local_run_is_an_incomplete_failed_run(tmp_path: Path) -> None:
    _full_disk_run(tmp_path, "local", "fulldisklocal")


def test_a_script_that_makes_results_json_a_folder_fails_its_run_cleanly(tmp_path: Path) -> None:
    script = ("import os\n"
              "os.mkdir(os.path.join(os.environ['HARNESS_RESULTS_DIR'], 'results.json'))\n")
    exp = write_experiment(tmp_path / "exp", {"baseline": script}, name="resultsdir", seeds=[0, 1])
    proc = harness(["run", "baseline", "--backend", "local", "-e", str(exp)])
    one_error_line(proc.stdout)
    assert proc.returncode == 1, proc.stdout
    runs = plan_state(exp)["runs"]
    assert [r["status"] for r in runs] == ["failed", "failed"], runs  # the plan went on to seed 1
    assert all(r["results_incomplete"] == "results.json is not a file" for r in runs), runs
    for run in runs:
        assert (exp / "results" / "baseline" / run["run_id"] / "results.json").is_dir()  # theirs, left alone
    # compare skips them and says why, rather than crashing on a folder
    out = harness(["compare", str(exp), "--no-plots"])
    one_error_line(out.stdout)
    assert out.returncode == 2, out.stdout


def test_event_writer_drops_records_on_a_full_disk_and_says_so_when_it_can_write_again(tmp_path: Path) -> None:
    from harness.monitor.events import EventWriter
    from harness.results.events import read_events

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    with small_tmpfs(tmp_path / "small") as small:
        writer = EventWriter(small / "events.jsonl", flush_interval=3600)
        writer.emit("batch", i=0, dt=0.1)
        writer.flush()
        filler = small / "filler"
        with open(filler, "wb", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"x" * 4096)
        for i in range(1, 6):
            writer.emit("batch", i=i, dt=0.1, payload="y" * 8192)  # each record needs a page more
            writer.flush()  # never raises: the training loop calling it goes on
        assert writer.dropped == 5 and writer.drop_reason == "no space left on device"
        filler.unlink()
        writer.emit("batch", i=6, dt=0.1)
        writer.close()
        events, bad = read_events(small / "events.jsonl")
        assert [e["i"] for e in events if e["type"] == "batch"] == [0, 6]
        (note,) = [e for e in events if e["type"] == "dropped"]
        assert note["records"] == 5 and note["reason"] == "no space left on device"
        assert bad <= 1  # at most the line a torn write cut
