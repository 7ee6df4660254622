"""The in-script API (seed 004 §3.3-§3.4, §6.1) with real torch / TensorFlow on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.monitor import ExperimentMonitor, MetricsLogger, ResourceMonitor, Timer
from harness.results.events import read_events


def test_seed_example_runs_unchanged_and_writes_the_seed_format(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [(torch.randn(8, 4, 4), torch.randint(0, 3, (8,))) for _ in range(6)]
    dataloader = data
    num_epochs = 2

    # ---- seed 004 §3.3, as written there ----
    monitor = ExperimentMonitor("BirdCLEF_2023", save_dir=str(tmp_path / "results"))
    monitor.start_mode("baseline", config={"epochs": 2, "batch_size": 8}, resource_interval=0.05)
    for epoch in range(num_epochs):
        for batch_idx, (inputs, targets) in enumerate(dataloader):
            monitor.start_batch()
            outputs = model(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            monitor.end_batch()
            monitor.log_loss(epoch, batch_idx, loss.item())
            accuracy = (outputs.argmax(1) == targets).float().mean().item()
            monitor.log_accuracy(epoch, batch_idx, accuracy)
    monitor.stop_mode()
    monitor.start_mode("optimization", config={"epochs": 2, "batch_size": 8}, resource_interval=0.05)
    for epoch in range(num_epochs):
        for batch_idx, (inputs, targets) in enumerate(dataloader):
            monitor.start_batch()
            model(inputs).sum().backward()
            monitor.end_batch()
            monitor.log_loss(epoch, batch_idx, 1.0)
    monitor.stop_mode()
    json_path = monitor.save_json()
    png_path = monitor.plot_metrics()
    # ----

    assert json_path == tmp_path / "results" / "BirdCLEF_2023_results.json"
    assert png_path.stat().st_size > 1000 and png_path.read_bytes()[:4] == b"\x89PNG"
    doc = json.loads(json_path.read_text())
    assert doc["experiment_name"] == "BirdCLEF_2023" and isinstance(doc["timestamp"], int)
    assert set(doc["modes"]) == {"baseline", "optimization"}
    base = doc["modes"]["baseline"]
    assert base["config"] == {"epochs": 2, "batch_size": 8}
    assert [b[0] for b in base["batch_times"]] == list(range(12))
    assert all(b[1] > 0 for b in base["batch_times"])
    assert len(base["metrics"]["losses"]) == 12 and len(base["metrics"]["accuracies"]) == 12
    assert base["metrics"]["losses"][0][:2] == [0, 0] and base["metrics"]["losses"][-1][:2] == [1, 5]
    usage = base["resource_usage"]
    assert len(usage["cpu_usage"]) >= 1 and len(usage["memory_usage"]) >= 1
    assert usage["gpu_usage"] == {} and "gpu" in usage["unavailable"]
    s = base["summary"]
    assert s["total_time"] > 0 and s["batch_time"]["min"] <= s["batch_time"]["mean"] <= s["batch_time"]["max"]
    assert s["throughput"] > 0  # batch_size from the config
    assert doc["modes"]["optimization"]["summary"]["num_batches"] == 12


def test_plain_run_defaults_save_dir_to_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monitor = ExperimentMonitor("baseline_only")  # seed 004 Q4
    monitor.start_mode("baseline", resource_interval=0.05)
    monitor.start_batch()
    monitor.end_batch()
    monitor.stop_mode()
    assert monitor.save_json() == Path("results/baseline_only_results.json")
    assert (tmp_path / "results" / "baseline_only_results.json").is_file()


def test_batches_times_the_wait_for_data_and_the_batch_size() -> None:
    def slow_loader():
        for _ in range(5):
            time.sleep(0.03)  # input-bound: waiting dominates
            yield ([0] * 7, [1] * 7)

    monitor = ExperimentMonitor("x", save_dir="/nonexistent")
    with monitor.mode("baseline", resource_interval=10):
        for _ in monitor.batches(slow_loader(), epoch=3):
            time.sleep(0.005)
    mode = monitor.results()["modes"]["baseline"]
    assert len(mode["batch_times"]) == 5 and all(0.004 < dt < 0.5 for _, dt in mode["batch_times"])
    assert len(mode["data_wait_times"]) == 5 and all(w >= 0.029 for _, w in mode["data_wait_times"])
    assert mode["batch_sizes"] == [[i, 7] for i in range(5)]
    assert mode["summary"]["data_wait_fraction"] > 0.5
    assert monitor.current.stopped  # the context manager stopped the mode


def test_phase_marks_and_keeps_eval_time_out_of_data_wait() -> None:
    monitor = ExperimentMonitor("x")
    monitor.start_mode("m", resource_interval=10)
    monitor.start_batch()
    monitor.end_batch()
    with monitor.phase("eval"):
        time.sleep(0.05)
    monitor.start_batch()
    monitor.end_batch()
    monitor.start_batch()
    monitor.end_batch()
    monitor.stop_mode()
    mode = monitor.results()["modes"]["m"]
    assert [p[1] for p in mode["phases"]] == ["eval"]
    waits = dict((i, w) for i, w in mode["data_wait_times"])
    assert 1 not in waits  # the eval pass is not data wait
    assert waits[2] < 0.05


def test_log_metric_and_parts() -> None:
    monitor = ExperimentMonitor("x")
    with monitor.mode("m", resource_interval=10):
        monitor.log_metric("lr", 0.01, step=0)
        monitor.log_metric("val_auc", 0.9, step=1)
    custom = monitor.results()["modes"]["m"]["metrics"]["custom"]
    assert custom == {"lr": [[0, 0.01]], "val_auc": [[1, 0.9]]}
    timer = Timer()
    timer.start()
    timer.start_batch()
    assert timer.end_batch() > 0 and timer.end_batch() is None  # no second end without a start
    assert timer.batch_times[0][0] == 0 and timer.stop() > 0
    logged: list[dict] = []
    MetricsLogger(logged.append).log_loss(0, 1, 0.5)
    assert logged == [{"type": "loss", "epoch": 0, "batch": 1, "value": 0.5}]
    rm = ResourceMonitor(interval=0.05)
    rm.start()
    time.sleep(0.2)
    rm.close()
    assert len(rm.samples) >= 3 and all("cpu" in s for s in rm.samples)


def test_sync_cuda_without_a_gpu_is_harmless() -> None:
    import torch

    monitor = ExperimentMonitor("x", sync="cuda")
    monitor.start_mode("m", resource_interval=10)
    # without CUDA there is nothing to synchronise, and no call is made
    assert (monitor.current.timer._sync is None) == (not torch.cuda.is_available())
    monitor.start_batch()
    assert monitor.end_batch() >= 0
    monitor.stop_mode()


def test_under_the_agent_events_stream_within_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("HARNESS_AGENT", "1")
    monkeypatch.setenv("HARNESS_EVENTS_FILE", str(events))
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path))
    monitor = ExperimentMonitor("x", save_dir=tmp_path / "not_used")
    monitor.start_mode("baseline", config={"batch_size": 2})
    for i in range(10):
        monitor.start_batch()
        monitor.end_batch(n=2)
        monitor.log_loss(0, i, 0.1)
    time.sleep(1.1)  # no close, no explicit flush: the background flush must have written them
    records, dropped = read_events(events)
    assert dropped == 0
    assert [r["i"] for r in records if r["type"] == "batch"] == list(range(10))
    assert sum(r["type"] == "loss" for r in records) == 10
    assert not any(r["type"] == "sample" for r in records)  # the agent samples, not the script
    monitor.stop_mode()
    monitor.close()
    records, _ = read_events(events)
    assert records[-1]["type"] == "mode_stop"
    # under the agent, save_json writes into the run folder
    assert monitor.save_json() == tmp_path / "x_results.json"


def test_importing_the_monitor_is_cheap() -> None:
    code = ("import sys, harness.monitor; heavy = ['torch', 'tensorflow', 'matplotlib', 'pynvml', 'click', "
            "'docker', 'pydantic', 'numpy', 'psutil']; print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.tensorflow
def test_keras_callback_times_model_fit(tmp_path: Path) -> None:
    import tensorflow as tf

    from harness.monitor import KerasMonitorCallback

    tf.random.set_seed(0)
    x = tf.random.normal((64, 8))
    y = tf.cast(tf.reduce_sum(x, axis=1) > 0, tf.int32)
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    monitor = ExperimentMonitor("keras")
    with monitor.mode("baseline", config={"batch_size": 16}, resource_interval=10):
        model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0,
                  callbacks=[KerasMonitorCallback(monitor, batch_size=16)])
    mode = monitor.results()["modes"]["baseline"]
    assert mode["summary"]["num_batches"] == 6  # 48 training rows / 16, two epochs
    assert [loss[:2] for loss in mode["metrics"]["losses"]] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert len(mode["metrics"]["accuracies"]) == 6
    assert set(mode["metrics"]["custom"]) >= {"val_loss", "val_accuracy"}
    assert mode["summary"]["throughput"] > 0


def test_a_script_that_dies_without_closing_keeps_its_last_events(tmp_path: Path) -> None:
    code = ("from harness.monitor import ExperimentMonitor\n"
            "m = ExperimentMonitor('x')\nm.start_mode('baseline')\n"
            "for i in range(5):\n    m.start_batch(); m.end_batch()\n"
            "raise RuntimeError('crash before any flush')\n")
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "HARNESS_AGENT": "1", "HARNESS_EVENTS_FILE": str(events)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "crash before any flush" in proc.stderr
    records, dropped = read_events(events)
    assert dropped == 0 and [r["i"] for r in records if r["type"] == "batch"] == [0, 1, 2, 3, 4]
