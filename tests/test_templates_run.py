"""The generated experiments really train: both modes, both frameworks, as `python script.py`."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest


def run_script(path: Path, script: str, results: Path, **env: str) -> dict[str, Any]:
    """Run a generated script the way a user does, and return the mode's results."""
    environ = {**os.environ, "HARNESS_CONFIG": str(path / "experiment_config.json"),
               "HARNESS_RESULTS_DIR": str(results), **env}
    proc = subprocess.run([sys.executable, script], cwd=path, env=environ, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(results.glob("*_results.json"))
    assert len(files) == 1, (files, proc.stdout)
    data = json.loads(files[0].read_text())
    mode = script.removesuffix(".py")
    assert list(data["modes"]) == [mode]
    return data["modes"][mode]


def check_mode(result: dict[str, Any], batches: int) -> None:
    assert len(result["batch_times"]) == batches
    assert all(dt > 0 for _, dt in result["batch_times"])
    losses = [value for _, _, value in result["metrics"]["losses"]]
    accuracies = [value for _, _, value in result["metrics"]["accuracies"]]
    assert len(losses) == len(accuracies) == batches
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert all(0.0 <= a <= 1.0 for a in accuracies)


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_{path.name}", path / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# 96 clips, every 10th held out -> 86 training clips -> 3 batches of 32.
BATCHES = 3


def test_pytorch_modes_train_and_see_the_same_batches(make_experiment: Callable[..., Path], tmp_path: Path) -> None:
    path = make_experiment("birds", "pytorch")
    baseline = run_script(path, "baseline.py", tmp_path / "b")
    optimization = run_script(path, "optimization.py", tmp_path / "o")
    check_mode(baseline, BATCHES)
    check_mode(optimization, BATCHES)
    assert baseline["config"]["num_workers"] == 0
    assert optimization["config"]["num_workers"] >= 1 and optimization["config"]["persistent_workers"]
    # Same seed, same shuffle, same data: the optimization changes the speed, not the training.
    b_losses = [v for _, _, v in baseline["metrics"]["losses"]]
    o_losses = [v for _, _, v in optimization["metrics"]["losses"]]
    assert np.allclose(b_losses, o_losses, rtol=1e-4), (b_losses, o_losses)


def test_seed_from_environment_changes_the_run(make_experiment: Callable[..., Path], tmp_path: Path) -> None:
    path = make_experiment("birds", "pytorch")
    seed0 = run_script(path, "baseline.py", tmp_path / "s0", HARNESS_SEED="0")
    seed5 = run_script(path, "baseline.py", tmp_path / "s5", HARNESS_SEED="5")
    assert seed5["config"]["seed"] == 5
    assert seed0["metrics"]["losses"] != seed5["metrics"]["losses"]


@pytest.mark.tensorflow
def test_tensorflow_modes_train(make_experiment: Callable[..., Path], tmp_path: Path) -> None:
    path = make_experiment("birds", "tensorflow")
    baseline = run_script(path, "baseline.py", tmp_path / "b")
    optimization = run_script(path, "optimization.py", tmp_path / "o")
    check_mode(baseline, BATCHES)
    check_mode(optimization, BATCHES)
    b_losses = [v for _, _, v in baseline["metrics"]["losses"]]
    o_losses = [v for _, _, v in optimization["metrics"]["losses"]]
    assert np.allclose(b_losses, o_losses, rtol=1e-3), (b_losses, o_losses)


def test_synthetic_data_is_deterministic(make_experiment: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_experiment("birds", "pytorch")
    monkeypatch.setenv("HARNESS_CONFIG", str(path / "experiment_config.json"))
    monkeypatch.syspath_prepend(str(path))
    baseline = load_module(path, "baseline")
    config = baseline.load_config()
    assert config["num_clips"] == 96 and config["epochs"] == 1

    clips_a, classes = baseline.find_clips(config)
    clips_b, _ = baseline.find_clips(dict(config))
    assert clips_a == clips_b and len(clips_a) == 96 and len(classes) == config["num_classes"]
    assert set(c.label for c in clips_a) == set(range(config["num_classes"]))
    first = baseline.BirdCLEFDataset(clips_a, config)[0][0]
    again = baseline.BirdCLEFDataset(clips_b, config)[0][0]
    assert first.shape == (1, config["n_mels"], 501)
    assert bool((first == again).all())

    other, _ = baseline.find_clips({**config, "data_seed": config["data_seed"] + 1})
    assert other != clips_a
    wave = baseline.synthesize_call(clips_a[0].label, clips_a[0].seed, config)
    assert not np.array_equal(wave, baseline.synthesize_call(clips_a[0].label, clips_a[0].seed + 1, config))


def test_optimizer_restores_the_baseline(make_experiment: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_experiment("birds", "pytorch")
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delitem(sys.modules, "baseline", raising=False)
    optimization = load_module(path, "optimization")
    baseline = sys.modules["baseline"]
    original = baseline.make_dataloader
    with pytest.raises(RuntimeError):
        with optimization.DataLoaderOptimizer(workers=2) as optimizer:
            assert optimizer.is_applied() and baseline.make_dataloader is not original
            raise RuntimeError("training crashed")
    assert baseline.make_dataloader is original
    monkeypatch.delitem(sys.modules, "baseline", raising=False)
