"""The example's GPU steps (spectrogram on the device, channels-last, autocast), exercised on the CPU.

This machine has no GPU, so each step is forced on through ``parameters`` and runs on the
CPU device: the same code, only the device differs. What a GPU adds (speed, CUDA kernels,
pinned copies) is left to a GPU host; what is checked here is that the steps compute the
same thing as the baseline, train, log a line each, restore everything, and that on the CPU
by default the optimization stays the data pipeline alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from test_templates_run import BATCHES, check_mode, load_module

FORCED = {"device_spectrogram": True, "channels_last": True}


def run(path: Path, script: str, results: Path, config: Path | None = None) -> tuple[dict[str, Any], str]:
    """Run a generated script as a user does; return the mode's results and its output."""
    env = {**os.environ, "HARNESS_CONFIG": str(config or path / "experiment_config.json"),
           "HARNESS_RESULTS_DIR": str(results)}
    proc = subprocess.run([sys.executable, script], cwd=path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (results_file,) = results.glob("*_results.json")
    return json.loads(results_file.read_text())["modes"][script.removesuffix(".py")], proc.stdout


def losses(result: dict[str, Any]) -> list[float]:
    return [value for _, _, value in result["metrics"]["losses"]]


def with_parameters(path: Path, name: str, **parameters: Any) -> Path:
    """A copy of the experiment's config with ``parameters`` overridden."""
    config = json.loads((path / "experiment_config.json").read_text())
    config["parameters"].update(parameters)
    target = path / name
    target.write_text(json.dumps(config))
    return target


@pytest.fixture
def pytorch_modules(make_experiment: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The generated baseline and optimization modules, imported in this process."""
    path = make_experiment("birds", "pytorch")
    monkeypatch.setenv("HARNESS_CONFIG", str(path / "experiment_config.json"))
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delitem(sys.modules, "baseline", raising=False)
    optimization = load_module(path, "optimization")
    yield sys.modules["baseline"], optimization
    monkeypatch.delitem(sys.modules, "baseline", raising=False)


def test_on_device_spectrogram_matches_the_baselines(pytorch_modules: tuple[ModuleType, ModuleType]) -> None:
    import torch

    baseline, optimization = pytorch_modules
    config = baseline.load_config()
    clips, _ = baseline.find_clips(config)
    waves = [baseline.synthesize_call(c.label, c.seed, config) for c in clips[:4]]
    expected = torch.stack([baseline.log_mel_spectrogram(w, config).unsqueeze(0) for w in waves])
    batch = torch.stack([torch.from_numpy(w).unsqueeze(0) for w in waves])
    got = optimization.LogMelFrontEnd(config)(batch)
    assert got.shape == expected.shape == (4, 1, config["n_mels"], 501)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    # Under autocast the spectrogram itself stays float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert optimization.LogMelFrontEnd(config)(batch).dtype == torch.float32


def test_fp16_steps_scale_and_unscale_the_gradients(pytorch_modules: tuple[ModuleType, ModuleType]) -> None:
    import torch

    baseline, optimization = pytorch_modules
    config = baseline.load_config()
    original_model, original_adam = baseline.BirdCLEFModel, torch.optim.Adam
    with optimization.MixedPrecision("fp16") as step:
        assert step.dtype == "fp16"
        model = baseline.BirdCLEFModel(config, num_classes=3)
        adam = torch.optim.Adam(model.parameters(), lr=1e-3)
        inputs = torch.randn(4, 1, config["n_mels"], 64)
        loss = torch.nn.functional.cross_entropy(model(inputs), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        weight = model.head[-1].weight
        scaled, before = weight.grad.clone(), weight.detach().clone()
        scale = float(step.scaler.get_scale())
        adam.step()
        assert scale == 2.0**16  # GradScaler's initial scale, applied to the gradients by the model
        assert torch.allclose(weight.grad * scale, scaled, rtol=1e-3)  # unscaled before the step
        assert not torch.equal(weight.detach(), before)  # and the step was taken
    assert baseline.BirdCLEFModel is original_model and torch.optim.Adam is original_adam


def test_pytorch_gpu_steps_train_on_the_cpu(make_experiment: Callable[..., Path], tmp_path: Path) -> None:
    path = make_experiment("birds", "pytorch")
    baseline, _ = run(path, "baseline.py", tmp_path / "b")
    # Spectrogram on the device and channels-last, in float32: the same training as the baseline.
    forced, out = run(path, "optimization.py", tmp_path / "f", with_parameters(path, "f.json", **FORCED,
                                                                                mixed_precision=False))
    check_mode(forced, BATCHES)
    assert np.allclose(losses(baseline), losses(forced), rtol=1e-3), (losses(baseline), losses(forced))
    assert "optimization: step 2/4 device_spectrogram: the model computes the log-mel spectrogram" in out
    assert "optimization: step 3/4 channels_last: model weights and convolution inputs in channels-last" in out
    assert "optimization: step 4/4 mixed_precision: skipped (" in out
    assert forced["config"]["device_spectrogram"] is True and forced["config"]["channels_last"] is True
    # bf16 autocast (CPU autocast here): lower precision, still training the same model on the same data.
    bf16, out = run(path, "optimization.py", tmp_path / "h", with_parameters(path, "h.json", **FORCED,
                                                                              mixed_precision="bf16"))
    check_mode(bf16, BATCHES)
    assert "optimization: step 4/4 mixed_precision: bf16 autocast on cpu for the forward pass" in out
    assert bf16["config"]["mixed_precision"] == "bf16"
    assert np.allclose(losses(baseline), losses(bf16), rtol=0.05), (losses(baseline), losses(bf16))


def test_pytorch_optimization_on_the_cpu_is_the_data_pipeline_alone(make_experiment: Callable[..., Path],
                                                                    tmp_path: Path) -> None:
    path = make_experiment("birds", "pytorch")
    result, out = run(path, "optimization.py", tmp_path / "o")
    check_mode(result, BATCHES)
    lines = [line for line in out.splitlines() if line.startswith("optimization: step ")]
    assert lines[0].startswith("optimization: step 1/4 dataloader: ") and "feature cache on" in lines[0]
    assert lines[1:] == [
        "optimization: step 2/4 device_spectrogram: skipped (no GPU; parameters.device_spectrogram: true uses it "
        "on the CPU)",
        "optimization: step 3/4 channels_last: skipped (no GPU; parameters.channels_last: true uses it on the CPU)",
        "optimization: step 4/4 mixed_precision: skipped (no GPU; parameters.mixed_precision: \"bf16\" uses it "
        "on the CPU)"]
    assert not {"device_spectrogram", "channels_last", "mixed_precision"} & set(result["config"])


@pytest.mark.tensorflow
def test_tensorflow_gpu_steps_on_the_cpu(make_experiment: Callable[..., Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_experiment("birds", "tensorflow")
    monkeypatch.setenv("HARNESS_CONFIG", str(path / "experiment_config.json"))
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delitem(sys.modules, "baseline", raising=False)
    optimization = load_module(path, "optimization")
    baseline = sys.modules["baseline"]
    config = baseline.load_config()
    clips, _ = baseline.find_clips(config)
    table = baseline.clip_table(clips[:4])
    expected = np.stack([x.numpy() for x, _ in table.map(baseline.example_loader(config))])
    waves = np.stack([x.numpy() for x, _ in table.map(optimization.waveform_loader(config))])
    got = optimization.LogMel(config)(baseline.tf.constant(waves)).numpy()
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5)
    monkeypatch.delitem(sys.modules, "baseline", raising=False)

    reference, _ = run(path, "baseline.py", tmp_path / "b")
    device, out = run(path, "optimization.py", tmp_path / "d",
                      with_parameters(path, "d.json", device_spectrogram=True, mixed_precision=False))
    check_mode(device, BATCHES)
    assert np.allclose(losses(reference), losses(device), rtol=1e-3)
    assert "optimization: step 2/3 device_spectrogram: a layer computes the log-mel spectrogram on the CPU" in out
    assert "optimization: step 3/3 mixed_precision: skipped (turned off in parameters.mixed_precision)" in out
    bf16, out = run(path, "optimization.py", tmp_path / "h",
                    with_parameters(path, "h.json", device_spectrogram=True, mixed_precision="bf16"))
    check_mode(bf16, BATCHES)  # Keras draws bf16 dropout masks: the losses differ more than rounding
    assert "optimization: step 3/3 mixed_precision: Keras mixed_bfloat16 policy" in out
    assert bf16["config"]["mixed_precision"] == "bf16"
