"""The live view of a run in flight: steps, step rate, data-wait share and GPU use from events.jsonl."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plan.live import WINDOW, LiveRun, plan_eta
from harness.monitor.events import encode


def append(path: Path, *records: dict, partial: str = "") -> None:
    with path.open("a") as f:
        f.write("".join(encode({"t": 0.0, "m": 0.0, **r}) for r in records) + partial)  # as the monitor writes


def batch(epoch: int, i: int, dt: float = 0.1, wait: float | None = 0.1) -> dict:
    return {"type": "batch", "epoch": epoch, "i": i, "dt": dt, "wait": wait, "n": 32}


def test_live_view_counts_steps_and_measures_rate_wait_and_gpu(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    live = LiveRun(path, "baseline seed 0")
    assert live.poll() == "starting"  # no file yet
    append(path, {"type": "mode_start", "mode": "baseline", "config": {"epochs": 3}}, {"type": "phase", "name": "train"})
    assert live.poll() == "train"
    append(path, *(batch(0, i, dt=0.3, wait=0.1) for i in range(4)),
           {"type": "sample", "gpus": {"GPU-a": {"index": 0, "util": 20.0}, "GPU-b": {"index": 1, "util": 60.0}}})
    # 4 steps of 0.4 s each: 2.5 steps/s, a quarter of it waiting for data; the GPUs' mean utilization.
    assert live.poll() == "epoch 0, step 4, 2.5 steps/s, data wait 25 %, GPU 40 %"
    # The first step of epoch 1 ends the first epoch: its length (4) times 3 epochs is the run's length.
    append(path, batch(1, 4, dt=0.2, wait=None), partial='{"type": "batch", "epoch": 1, ')
    assert live.poll().startswith("epoch 1, step 5/12, ")
    assert live.expected_steps() == 12 and live.steps == 5
    assert live.remaining() == pytest.approx(7 / live.step_rate())
    append(path, partial='"i": 5, "dt": 0.2, "wait": 0.0}\n')  # the cut line ends here
    assert live.poll().startswith("epoch 1, step 6/12, ")
    assert live.summary().startswith("6 steps, ")


def test_rate_and_wait_follow_the_last_steps_only(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    append(path, *(batch(0, i, dt=1.0, wait=1.0) for i in range(WINDOW)),
           *(batch(0, WINDOW + i, dt=0.1, wait=0.0) for i in range(WINDOW)), partial="not json\n")
    live = LiveRun(path, "optimization seed 1")
    live.poll()
    assert live.steps == 2 * WINDOW
    assert live.step_rate() == pytest.approx(10.0) and live.wait_share() == 0.0
    assert live.remaining() is None  # one epoch seen and no epoch count: the run's length is unknown
    assert live.describe() == f"epoch 0, step {2 * WINDOW}, 10 steps/s, data wait 0 %"


def test_remote_runs_are_not_read(tmp_path: Path) -> None:
    assert LiveRun(tmp_path / "nowhere", "x", remote=True).poll() == "on the cluster"


def test_plan_eta_uses_completed_runs_then_the_measured_step_rate() -> None:
    # Nothing known yet.
    assert plan_eta(pending=3, durations=[], in_flight=[(5.0, None)], slots=1) is None
    # The run in flight projects itself: 10 s elapsed + 20 s left = 30 s per run.
    assert plan_eta(pending=3, durations=[], in_flight=[(10.0, 20.0)], slots=1) == pytest.approx(20 + 3 * 30)
    # Completed runs give the duration; the measured rate still gives the running run's time left.
    assert plan_eta(pending=2, durations=[40.0, 60.0], in_flight=[(10.0, 5.0)], slots=1) == pytest.approx(5 + 100)
    # Without a projection a running run has the mean duration left; slots share the work.
    assert plan_eta(pending=2, durations=[50.0], in_flight=[(20.0, None), (60.0, None)], slots=2) == \
        pytest.approx((30 + 0 + 100) / 2)
    assert plan_eta(pending=0, durations=[], in_flight=[], slots=1) == 0.0


def test_progress_shows_the_run_in_flight_and_its_figures_in_plain_lines(tmp_path: Path) -> None:
    import time
    from types import SimpleNamespace

    from harness.plan.progress import Progress

    lines: list[str] = []
    run_dir = tmp_path / "r0"
    run_dir.mkdir()
    run = SimpleNamespace(run_id="r0", label="baseline seed 0", status="running", started=100.0, ended=None,
                          wall_time=None, message="")
    with Progress(total=3, done=0, slots=1, echo=lines.append, plain_interval=0.2) as progress:
        progress.start_run(run, run_dir)
        began = time.monotonic()
        append(run_dir / "events.jsonl", {"type": "mode_start", "mode": "baseline", "config": {"epochs": 2}},
               *(batch(0, i, dt=0.5, wait=0.5) for i in range(4)), batch(1, 4, dt=0.5, wait=0.5))
        deadline = time.monotonic() + 10
        while not any(line.startswith("  baseline seed 0: ") for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        # 5 of 8 steps at 1 step/s: 3 s left for this run; each of the 2 others is expected to take
        # what this one will have taken (its time so far + 3 s).
        live = next(line for line in lines if line.startswith("  baseline seed 0: "))
        assert live.startswith("  baseline seed 0: epoch 1, step 5/8, 1 steps/s, data wait 50 %; ETA ")
        elapsed = time.monotonic() - began
        assert progress.eta() == pytest.approx(3 + 2 * (elapsed + 3), abs=0.5)
        run.status, run.ended, run.wall_time = "completed", 108.0, 8.0
        progress.end_run(run)
    assert lines[0] == "[1/3] baseline seed 0: started r0"
    assert lines[-1] == "[1/3] baseline seed 0: completed in 8.0s (5 steps, 1 steps/s, data wait 50 %); ETA 16s"
