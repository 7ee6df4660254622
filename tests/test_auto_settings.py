"""``gpus: auto`` and ``--backend auto``: what they resolve to, and the notices they print once (issue #12).

This machine has no GPU and no NVIDIA runtime: resolution against GPUs is checked with given GPU
lists and recorded ``docker info`` answers (the only stand-ins: hardware this machine lacks); what
this machine itself resolves to is checked for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.backends import resolve_backend, resolve_gpus
from harness.check import check_gpu_runtime
from harness.cli import cli
from harness.config import ExperimentConfig, Resources
from harness.engine import gpu_runtime
from harness.host_gpus import GpuInfo, host_gpu_ids
from harness.settings import GpuRequest, RunOptions, resolve_settings

# `docker info` answers as recorded: this machine's engine (runc only) and one with the NVIDIA toolkit.
RUNC_ONLY = {"Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}}, "CDISpecDirs": None}
WITH_NVIDIA = {"Runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "runc": {"path": "runc"}}}


def test_auto_is_the_default_and_0_means_device_0() -> None:
    assert Resources().gpus == "auto"
    assert ExperimentConfig(competition="c", kaggle_slug="c", framework="pytorch").resources.gpus == "auto"
    assert Resources(gpus="0").gpus == "0" and Resources(gpus=0).gpus == "none"  # a JSON number is a count
    assert Resources(gpus="none").gpus == "none" and Resources(gpus="count:2").gpus == "count:2"
    config = ExperimentConfig(competition="c", kaggle_slug="c", framework="pytorch")
    request = resolve_settings(config, RunOptions(gpus="0")).gpus
    assert request == GpuRequest("0") and request.describe() == "device 0"
    from docker.types import DeviceRequest

    assert request.device_requests() == [DeviceRequest(device_ids=["0"], capabilities=[["gpu"]])]
    assert request.cuda_visible_devices() == "0"
    assert GpuRequest("none").cuda_visible_devices() == ""


def test_auto_resolves_to_the_gpus_the_backend_can_use() -> None:
    auto = GpuRequest("auto")
    assert auto.resolve([], "docker", runtime=True) == (GpuRequest("none"), False)
    assert auto.resolve(["0", "1"], "docker", runtime=True) == (GpuRequest("0,1"), False)
    assert auto.resolve(["0", "1"], "local", runtime=False) == (GpuRequest("0,1"), False)
    # GPUs there, but the engine cannot hand them to a container: the CPU, and say why (once).
    assert auto.resolve(["0"], "docker", runtime=False) == (GpuRequest("none"), True)
    assert GpuRequest("all").resolve(["0"], "docker", runtime=False) == (GpuRequest("all"), False)
    assert GpuRequest("auto").ray_gpus() == 0.0


def test_host_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [GpuInfo("0", "GPU-aaaa"), GpuInfo("1", "GPU-bbbb"), GpuInfo("2", "GPU-cccc")]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert host_gpu_ids(gpus) == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert host_gpu_ids(gpus) == ["1"]
    assert host_gpu_ids(gpus, visible="2,0") == ["0", "2"]
    assert host_gpu_ids(gpus, visible="GPU-bbbb") == ["1"] and host_gpu_ids(gpus, visible="GPU-cc") == ["2"]
    assert host_gpu_ids(gpus, visible="") == []


def test_this_machine_resolves_auto_to_none_without_a_notice() -> None:
    assert host_gpu_ids() == []  # no NVIDIA driver here
    for backend in ("docker", "local"):
        assert resolve_gpus(GpuRequest("auto"), backend) == (GpuRequest("none"), None)


def test_engine_gpu_runtime_and_check_with_gpus_but_no_runtime() -> None:
    assert gpu_runtime(RUNC_ONLY) is None
    assert gpu_runtime(WITH_NVIDIA) == "NVIDIA runtime registered (runtimes: nvidia, runc)"
    result = check_gpu_runtime(RUNC_ONLY, gpu_count=2)
    assert result.status == "warn"
    assert result.detail == ("2 GPU(s) seen by NVML, but this Docker engine has no NVIDIA runtime or CDI "
                             "(runtimes: io.containerd.runc.v2, runc): containers run on the CPU (gpus auto) "
                             "or fail (--gpus all)")
    assert "nvidia-ctk runtime configure --runtime=docker" in (result.fix or "")
    assert "--backend local" in (result.fix or "")
    assert check_gpu_runtime(RUNC_ONLY, gpu_count=0).detail.startswith("no NVIDIA runtime or CDI")
    assert check_gpu_runtime(WITH_NVIDIA, gpu_count=2).status == "ok"


def test_auto_backend_falls_back_with_reason_and_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    backend, notice = resolve_backend("auto")
    assert backend == "local"
    assert notice == (f"No Docker engine: running as local processes, with no container isolation, because the "
                      f"Docker engine at unix://{tmp_path}/dead.sock does not answer (no socket); fix: start the "
                      "engine: sudo systemctl start docker (or run dockerd), or choose --backend local.")
    assert resolve_backend("local") == ("local", None)


def test_harness_run_says_it_once_for_the_whole_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from test_plan import SCRIPT_OK, write_experiment

    exp = write_experiment(tmp_path / "exp", {"baseline": SCRIPT_OK, "optimization": SCRIPT_OK}, seeds=[0, 1])
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    monkeypatch.chdir(exp)
    result = CliRunner().invoke(cli, ["run", "baseline", "optimization"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    notices = [line for line in lines if line.startswith("No Docker engine: running as local processes")]
    assert len(notices) == 1 and lines.index(notices[0]) < lines.index(
        next(line for line in lines if line.startswith("Running plan ")))
    assert sum("local process" in line and line.startswith("[") for line in lines) == 4
    assert "GPU" not in result.output.replace("GPUs", "")  # auto became none here, and nothing says so
    state = json.loads(next((exp / "results" / "plans").glob("*/state.json")).read_text())
    assert state["options"]["backend"] == "auto"  # the plan keeps the choice; each invocation resolves it


def test_new_experiments_ask_for_auto(tmp_path: Path) -> None:
    from harness.scaffold import create_experiment

    for framework in ("pytorch", "tensorflow"):
        path = create_experiment("birds", framework, root=tmp_path / framework)
        assert json.loads((path / "experiment_config.json").read_text())["resources"]["gpus"] == "auto"
