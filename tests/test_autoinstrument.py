"""Automatic step timing, for real: unmodified scripts run in a subprocess with the bootstrap first on
PYTHONPATH and the environment the agent gives them, with real PyTorch and real Keras on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.autoinstrument import bootstrap_dir, child_env
from harness.results.events import read_events

REPO = Path(__file__).resolve().parent.parent

# A plain PyTorch loop: SGD, a DataLoader over a tensor dataset, an evaluation pass after each epoch
# (a second DataLoader that must not count as training), no harness import. It prints how many
# optimizer steps it made, so the test can hold the records against it.
TORCH_LOOP = r'''
import sys, torch
from torch.utils.data import DataLoader, TensorDataset
workers = int(sys.argv[1]) if len(sys.argv) > 1 else 0
torch.manual_seed(0)
x, y = torch.randn(600, 20), torch.randint(0, 2, (600,))
loader = DataLoader(TensorDataset(x, y), batch_size=32, num_workers=workers)   # 18 full batches + 24
val = DataLoader(TensorDataset(x[:96], y[:96]), batch_size=48)
model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
steps = 0
for epoch in range(2):
    model.train()
    for xb, yb in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
        steps += 1
    model.eval()
    with torch.no_grad():
        for xb, yb in val:
            model(xb)
print("STEPS", steps)
'''

KERAS_FIT = r'''
import numpy as np
import tensorflow as tf
rng = np.random.default_rng(0)
x = rng.random((500, 8), dtype=np.float32)
y = (x.sum(axis=1) > 4).astype("int32")
model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(16, activation="relu"),
                             tf.keras.layers.Dense(2)])
model.compile(optimizer="sgd", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
model.fit(x, y, batch_size=64, epochs=2, validation_split=0.2, verbose=0)
print("FIT-DONE")
'''


def run_script(tmp_path: Path, source: str, *args: str, env: dict[str, str] | None = None,
               bootstrap: bool = True) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run ``source`` as the agent would run a mode's script; return the process and its events."""
    script = tmp_path / "script.py"
    script.write_text(source)
    events = tmp_path / "events.jsonl"
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    base.update({"PYTHONPATH": str(REPO), "HARNESS_AGENT": "1", "HARNESS_MODE": "baseline",
                 "HARNESS_RUN_ID": "r1", "HARNESS_RESULTS_DIR": str(tmp_path), "HARNESS_EVENTS_FILE": str(events),
                 "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    if bootstrap:
        base = child_env(base)
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=base, capture_output=True,
                          text=True, timeout=600)
    records = read_events(events)[0] if events.exists() else []
    return proc, records


def batches(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "batch"]


def notes(records: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in records if r["type"] == "note"]


def steps_printed(proc: subprocess.CompletedProcess[str]) -> int:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("STEPS")))


@pytest.mark.parametrize("workers", [0, 2])
def test_plain_pytorch_loop_gets_one_record_per_optimizer_step(tmp_path: Path, workers: int) -> None:
    proc, records = run_script(tmp_path, TORCH_LOOP, str(workers))
    steps = steps_printed(proc)
    got = batches(records)
    assert steps == 2 * 19
    assert len(got) == steps  # one per optimizer step; the evaluation passes add none
    assert [b["i"] for b in got] == list(range(steps))
    assert all(b["source"] == "auto" for b in got)
    assert all(isinstance(b["wait"], float) and b["wait"] > 0 for b in got)  # time inside __next__
    assert all(b["dt"] > 0 for b in got)
    assert [b["n"] for b in got] == ([32] * 18 + [24]) * 2
    assert Counter(b["epoch"] for b in got) == {0: 19, 1: 19}
    assert notes(records) == []


def test_a_step_spans_from_the_previous_step_and_holds_its_data_wait(tmp_path: Path) -> None:
    # A dataset that sleeps 30 ms per sample fetch and a loop that sleeps 20 ms per step: the wait
    # must land in `wait`, the rest in `dt`, and an idle pause between epochs must not count.
    source = r'''
import time, torch
from torch.utils.data import DataLoader, Dataset
class Slow(Dataset):
    def __len__(self): return 8
    def __getitem__(self, i):
        time.sleep(0.03)
        return torch.ones(3)
p = torch.nn.Parameter(torch.zeros(3))
opt = torch.optim.SGD([p], lr=0.1)
for epoch in range(2):
    for xb in DataLoader(Slow(), batch_size=1):
        time.sleep(0.02)
        (p * xb).sum().backward()
        opt.step()
    time.sleep(0.5)  # between epochs: not a step
print("STEPS", 16)
'''
    proc, records = run_script(tmp_path, source)
    steps_printed(proc)
    got = batches(records)
    assert len(got) == 16
    for b in got:
        assert 0.029 <= b["wait"] < 0.3, b
        assert 0.019 <= b["dt"] < 0.3, b  # the 0.5 s pause is in neither
    assert sum(b["dt"] + b["wait"] for b in got) < 16 * 0.05 + 3.0


def test_gradient_accumulation_and_two_optimizers(tmp_path: Path) -> None:
    source = r'''
import torch
from torch.utils.data import DataLoader, TensorDataset
loader = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=8)      # 8 batches
d, g = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
opt_d, opt_g = torch.optim.SGD(d.parameters(), lr=0.1), torch.optim.Adam(g.parameters())
for i, (xb,) in enumerate(loader):
    (d(xb).sum() + g(xb).sum()).backward()
    if i % 2 == 1:                 # accumulate two batches per step; step both "networks"
        opt_d.step(); opt_g.step()
print("STEPS", 4)
'''
    proc, records = run_script(tmp_path, source)
    steps_printed(proc)
    got = batches(records)
    assert len(got) == 4  # the first optimizer marks the steps; the second adds none
    assert [b["n"] for b in got] == [16, 16, 16, 16]  # both batches of each step are counted


@pytest.mark.tensorflow
def test_plain_keras_fit_gets_the_keras_callback(tmp_path: Path) -> None:
    proc, records = run_script(tmp_path, KERAS_FIT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = batches(records)
    # 400 training samples after validation_split=0.2, batch 64: 6 full batches and one of 16, twice
    assert [b["n"] for b in got] == ([64] * 6 + [16]) * 2
    assert Counter(b["epoch"] for b in got) == {0: 7, 1: 7}
    assert all(b["dt"] > 0 for b in got)
    types = Counter(r["type"] for r in records)
    assert types["loss"] == 14 and types["mode_start"] == 1
    assert notes(records) == []


def test_a_script_with_its_own_monitor_is_not_counted_twice(tmp_path: Path) -> None:
    source = r'''
import torch
from torch.utils.data import DataLoader, TensorDataset
from harness.monitor import ExperimentMonitor
monitor = ExperimentMonitor("own")
monitor.start_mode("baseline")
loader = DataLoader(TensorDataset(torch.randn(80, 4)), batch_size=8)
lin = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(lin.parameters(), lr=0.1)
for (xb,) in monitor.batches(loader, epoch=0):
    lin(xb).sum().backward()
    opt.step()
monitor.stop_mode()
monitor.close()
print("STEPS", 10)
'''
    proc, records = run_script(tmp_path, source)
    assert steps_printed(proc) == 10
    got = batches(records)
    assert len(got) == 10
    assert not any(b.get("source") == "auto" for b in got)
    assert notes(records) == []


def test_a_script_without_an_optimizer_gets_the_note(tmp_path: Path) -> None:
    source = r'''
import torch
w = torch.zeros(3, requires_grad=True)
for _ in range(20):          # updates parameters by hand, like word_language_model
    ((w - 1) ** 2).sum().backward()
    with torch.no_grad():
        w -= 0.1 * w.grad
        w.grad.zero_()
print("STEPS", 0)
'''
    proc, records = run_script(tmp_path, source)
    steps_printed(proc)
    assert batches(records) == []
    assert notes(records) == ["no optimizer steps seen: per-step timing unavailable (end-to-end time only)"]


@pytest.mark.parametrize("switch", ["0", "off"])
def test_the_switch_turns_it_off(tmp_path: Path, switch: str) -> None:
    proc, records = run_script(tmp_path, TORCH_LOOP, env={"HARNESS_AUTO_INSTRUMENT": switch})
    assert steps_printed(proc) == 38
    assert records == []


@pytest.mark.parametrize("target", ["StepTimer.step", "StepTimer.fetched"])
def test_a_failing_hook_does_not_stop_training(tmp_path: Path, target: str) -> None:
    cls, method = target.split(".")
    source = f'''
import harness.autoinstrument.torch_hooks as hooks
def broken(*args, **kwargs):
    raise ValueError("planted failure")
setattr(hooks.{cls}, "{method}", broken)
''' + TORCH_LOOP
    proc, records = run_script(tmp_path, source)
    assert steps_printed(proc) == 38  # training ran to its end
    assert batches(records) == []
    hook = "optimizer step" if method == "step" else "DataLoader"
    assert notes(records) == [f"automatic step timing turned off: the {hook} hook failed "
                              f"(ValueError: planted failure)"]


@pytest.mark.tensorflow
def test_a_failing_keras_callback_does_not_stop_fit(tmp_path: Path) -> None:
    source = r'''
from harness.monitor.keras import KerasMonitorCallback
def broken(self, *args, **kwargs):
    raise RuntimeError("planted failure")
KerasMonitorCallback.on_train_batch_begin = broken
''' + KERAS_FIT
    proc, records = run_script(tmp_path, source)
    assert proc.returncode == 0 and "FIT-DONE" in proc.stdout, proc.stderr[-3000:]
    assert batches(records) == []
    assert notes(records) == ["automatic step timing turned off: the Keras callback failed "
                              "(RuntimeError: planted failure)"]


def test_the_bootstrap_leaves_no_trace_and_runs_the_environments_sitecustomize(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import os\nos.environ['THEIRS_RAN'] = '1'\n")
    source = r'''
import os, subprocess, sys
print("THEIRS", os.environ.get("THEIRS_RAN"))
print("PATH-CLEAN", not any("autoinstrument" in p for p in sys.path + [os.environ.get("PYTHONPATH", "")]))
print("TORCH-NOT-IMPORTED", "torch" not in sys.modules)
child = subprocess.run([sys.executable, "-c", "import sys; print('harness.autoinstrument' in sys.modules)"],
                       capture_output=True, text=True)
print("CHILD-BARE", child.stdout.strip() == "False")
'''
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{theirs}"}
    proc, _ = run_script(tmp_path, source, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["THEIRS", "1", "PATH-CLEAN", "True", "TORCH-NOT-IMPORTED", "True",
                                   "CHILD-BARE", "True"]
    assert child_env({"PYTHONPATH": "/x"})["PYTHONPATH"] == f"{bootstrap_dir()}{os.pathsep}/x"


def test_the_bootstrap_without_a_usable_harness_prints_one_line_and_runs(tmp_path: Path) -> None:
    # An interpreter whose `harness` is not ours (here: a package that fails to import) still runs the script.
    fake = tmp_path / "fake" / "harness"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not this harness')\n")
    script = tmp_path / "s.py"
    script.write_text("print('RAN')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env.update(PYTHONPATH=f"{bootstrap_dir()}{os.pathsep}{fake.parent}", HARNESS_EVENTS_FILE=str(tmp_path / "e.jsonl"))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout == "RAN\n"
    assert proc.stderr == "harness: automatic step timing is off (ImportError: not this harness)\n"
