"""GPU sampling: "no NVML / no GPU" for real on this machine; per-metric "not supported" handling and
UUID keying with a recorded-response stand-in for the pynvml functions we call (hardware we lack).

The stand-in keeps the real module's constants and exception classes (``NVMLError(3)`` is a real
``NVMLError_NotSupported``); only the device queries answer from recorded H100 / T4 responses.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from harness.monitor.gpu import GpuProbe, _visible_filter
from harness.monitor.sampler import ResourceSampler

MiB = 2**20
# Recorded from `nvidia-smi -q` / NVML on an H100 SXM and a T4 (the T4 has no SM-clock query under vGPU,
# and reports power as not supported there).
DEVICES = [
    {"uuid": "GPU-8f6d2c1e-0b9a-4c4e-9d3e-2f1a6b7c8d90", "name": "NVIDIA H100 80GB HBM3", "util": 87,
     "mem": (85520809984, 20480 * MiB), "power_mw": 412345, "temp": 54, "sm": 1980},
    {"uuid": "GPU-11112222-3333-4444-5555-666677778888", "name": "Tesla T4", "util": 3,
     "mem": (15843721216, 512 * MiB), "power_mw": None, "temp": 41, "sm": None},
]


class FakeNvml:
    """pynvml with recorded device answers; ``calls`` counts queries per function."""

    def __init__(self, devices: list[dict[str, Any]] = DEVICES, init_error: int | None = None,
                 processes: dict[int, list[tuple[int, int | None]]] | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.processes = processes or {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:  # constants and exception classes from the real module
        return getattr(pynvml, name)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.devices[h]["uuid"]

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.devices[h]["name"]

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        self._count("util")
        return SimpleNamespace(gpu=self.devices[h]["util"], memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        total, used = self.devices[h]["mem"]
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self._count("power")
        if self.devices[h]["power_mw"] is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.devices[h]["power_mw"]

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self.devices[h]["temp"]

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        assert clock == pynvml.NVML_CLOCK_SM
        self._count("sm")
        if self.devices[h]["sm"] is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.devices[h]["sm"]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in self.processes.get(h, [])]


def test_no_nvml_on_this_machine_is_a_reason_not_a_crash() -> None:
    probe = GpuProbe()  # the real pynvml: no libnvidia-ml.so here
    assert not probe.available
    assert "NVML" in probe.reason or "nvidia-ml-py" in probe.reason
    gpus, unavailable = probe.read()
    assert gpus == {} and unavailable == {"gpu": probe.reason}
    sample = ResourceSampler().sample()
    assert "gpus" not in sample and sample["unavailable"]["gpu"] == probe.reason


def test_driver_not_loaded_is_recorded() -> None:
    probe = GpuProbe(FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert not probe.available and "Driver Not Loaded" in probe.reason


def test_devices_are_keyed_by_uuid_with_units_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probe = GpuProbe(FakeNvml())
    assert probe.driver == "550.54.15" and probe.cuda_driver == "12.4"
    gpus, _ = probe.read()
    h100 = gpus[DEVICES[0]["uuid"]]
    assert h100 == {"index": 0, "util": 87, "mem_used": 20480.0, "mem_total": 81559.0, "power_w": 412.35,
                    "temp_c": 54, "sm_clock_mhz": 1980}
    assert probe.names()[1] == {"index": 1, "uuid": DEVICES[1]["uuid"], "name": "Tesla T4"}


def test_an_unsupported_metric_is_unavailable_for_that_device_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml()
    probe = GpuProbe(nvml)
    for _ in range(3):
        gpus, unavailable = probe.read()
    t4 = gpus[DEVICES[1]["uuid"]]
    assert "power_w" not in t4 and "sm_clock_mhz" not in t4
    assert t4["util"] == 3 and t4["temp_c"] == 41 and t4["mem_used"] == 512.0  # the rest go on
    assert "power_w" in gpus[DEVICES[0]["uuid"]]  # the other device keeps its power figure
    assert unavailable == {f"gpu.{DEVICES[1]['uuid']}.power_w": "not supported by Tesla T4",
                           f"gpu.{DEVICES[1]['uuid']}.sm_clock_mhz": "not supported by Tesla T4"}
    # an unsupported query is not repeated: 3 reads x H100 + 1 failed try on the T4
    assert nvml.calls["power"] == 4 and nvml.calls["util"] == 6


def test_cuda_visible_devices_restricts_by_index_or_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [d["uuid"] for d in GpuProbe(FakeNvml()).names()] == [DEVICES[1]["uuid"]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", DEVICES[0]["uuid"][:12])
    assert [d["uuid"] for d in GpuProbe(FakeNvml()).names()] == [DEVICES[0]["uuid"]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    probe = GpuProbe(FakeNvml())
    assert not probe.available and "no GPU visible" in probe.reason
    assert _visible_filter(None) is None and _visible_filter("all") is None


def test_process_attribution_when_nvml_pids_are_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(processes={0: [(4242, 3000 * MiB), (9999, 100 * MiB)]})
    probe = GpuProbe(nvml)
    gpus, _ = probe.read(pids={1})  # a container's PID namespace: NVML's host PIDs are not ours
    assert probe.attribution == "device" and "proc_mem_used" not in gpus[DEVICES[0]["uuid"]]
    gpus, _ = probe.read(pids={4242})
    assert probe.attribution == "process" and gpus[DEVICES[0]["uuid"]]["proc_mem_used"] == 3000.0


def test_sampler_carries_gpu_figures_and_attribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sample = ResourceSampler(gpu=GpuProbe(FakeNvml())).sample()
    assert set(sample["gpus"]) == {d["uuid"] for d in DEVICES}
    assert sample["gpu_memory_attribution"] == "device"
    assert "cpu" in sample and "memory" in sample  # the GPU part never takes the others down
