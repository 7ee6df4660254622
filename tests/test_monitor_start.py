"""Cheap mode start and a light sampler (issue 14): nothing on the training thread, NVML once a process,
only fast-moving figures on every tick.

Real cgroup files of this machine; NVML answers from the recorded H100 / T4 responses of test_gpu.py
(no GPU here), put where the code imports ``pynvml`` from.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pynvml
import pytest

from harness.monitor import ExperimentMonitor, gpu as gpu_module
from harness.monitor.gpu import GpuProbe, shared_probe
from harness.monitor.sampler import ResourceSampler, SamplerThread
from test_gpu import DEVICES, FakeNvml  # tests/ is on sys.path under pytest


@pytest.fixture
def recorded_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """A fresh process-wide probe that will find the recorded GPUs when it first imports pynvml."""
    nvml = FakeNvml()
    inits: list[str] = []

    def init() -> None:
        inits.append(threading.current_thread().name)

    nvml.nvmlInit = init  # type: ignore[method-assign]
    nvml.inits = inits  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(gpu_module, "_shared", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("HARNESS_AGENT", raising=False)
    monkeypatch.delenv("HARNESS_EVENTS_FILE", raising=False)
    return nvml


def test_modes_initialise_nvml_once_off_the_training_thread_and_never_sample_on_it(
        recorded_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sampled_on: list[str] = []
    real_sample = ResourceSampler.sample

    def traced(self: ResourceSampler, full: bool | None = None) -> dict:
        sampled_on.append(threading.current_thread().name)
        return real_sample(self, full)

    monkeypatch.setattr(ResourceSampler, "sample", traced)
    monitor = ExperimentMonitor("start", save_dir=tmp_path)
    for mode in ("baseline", "optimization", "baseline-again"):
        monitor.start_mode(mode, resource_interval=0.05)
        time.sleep(0.2)
        monitor.stop_mode()
    results = monitor.results()
    main = threading.current_thread().name
    assert recorded_nvml.inits and main not in recorded_nvml.inits
    assert len(recorded_nvml.inits) == 1  # one NVML session for the process, not one per mode
    assert sampled_on and main not in sampled_on
    for mode in ("baseline", "optimization", "baseline-again"):
        usage = results["modes"][mode]["resource_usage"]
        assert len(usage["cpu_usage"]) >= 2  # first, ticks and the final sample, all from the thread
        assert set(usage["gpu_usage"]) == {d["uuid"] for d in DEVICES}
    assert shared_probe() is gpu_module._shared and shared_probe().available  # still open for the next mode


def test_a_light_tick_reads_usage_and_a_full_tick_everything(recorded_nvml: FakeNvml) -> None:
    sampler = ResourceSampler()
    full = sampler.sample()
    light = sampler.sample()
    assert {"usage_ns", "nr_periods", "limit_cores"} <= set(light["cpu"]) and "cores" in light["cpu"]
    assert {"usage", "working_set", "limit", "percent_of_limit"} <= set(light["memory"])
    assert light["memory"]["limit"] == full["memory"]["limit"]
    assert "peak" in full["memory"] and "peak" not in light["memory"]
    assert "oom_kill" in full["memory"] and "oom_kill" not in light["memory"]
    sampler.full_interval_ns = 0
    cadence = sampler.sample()  # a full tick by the clock: PSI and memory.stat, not the 10 s counters
    assert "peak" not in cadence["memory"] and "peak" in sampler.sample(full=True)["memory"]
    sampler.full_interval_ns = 10**9
    uuid = DEVICES[0]["uuid"]
    assert {"power_w", "temp_c", "sm_clock_mhz", "mem_total"} <= set(full["gpus"][uuid])
    assert set(light["gpus"][uuid]) == {"index", "util", "mem_used"}
    power_calls = recorded_nvml.calls["power"]
    for _ in range(5):
        sampler.sample()
    assert recorded_nvml.calls["power"] == power_calls  # NVML power: once a second, not every tick
    sampler.full_interval_ns = 0
    assert "power_w" in sampler.sample()["gpus"][uuid]
    sampler.close()


def test_a_light_tick_does_not_mix_device_memory_into_a_per_process_series(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(processes={0: [(4242, 3000 * 2**20)]})
    sampler = ResourceSampler(gpu=GpuProbe(nvml), track_pids=lambda: {4242})
    full, light = sampler.sample(), sampler.sample()
    uuid = DEVICES[0]["uuid"]
    assert full["gpus"][uuid]["proc_mem_used"] == 3000.0 and full["gpu_memory_attribution"] == "process"
    assert "mem_used" not in light["gpus"][uuid] and "proc_mem_used" not in light["gpus"][uuid]
    sampler.close()


def test_the_10hz_thread_takes_full_samples_once_a_second_plus_first_and_last() -> None:
    samples: list[dict] = []
    thread = SamplerThread(lambda: ResourceSampler(gpus=False), 0.1, samples.append, close_sampler=True).start()
    time.sleep(2.3)
    thread.stop()
    assert len(samples) >= 12
    assert "peak" in samples[0]["memory"] and "peak" in samples[-1]["memory"]  # first and final: everything
    assert all("peak" not in s["memory"] for s in samples[1:-1])  # the peak is a high-water mark: every 10 s
    full = [s for s in samples if "unavailable" in s]  # full ticks say why there is no GPU part; light ones don't
    assert 3 <= len(full) <= 6  # first, ~2 over 2.3 s, final (more if the box stalls)
    ms = [s["m"] for s in full]
    assert all(b - a >= 0.99 for a, b in zip(ms[:-2], ms[1:-1]))  # the cadence, not every tick
    assert all("working_set" in s["memory"] and "usage_ns" in s["cpu"] for s in samples)


def test_the_shared_probe_survives_close_and_ends_at_shutdown() -> None:
    nvml = FakeNvml()
    shutdowns: list[int] = []
    nvml.nvmlShutdown = lambda: shutdowns.append(1)  # type: ignore[method-assign]
    probe = GpuProbe(nvml, shared=True)
    probe.close()
    assert probe.available and not shutdowns
    probe.shutdown()
    assert not probe.available and shutdowns == [1]
    own = GpuProbe(nvml)
    own.close()
    assert shutdowns == [1, 1]


def test_a_sampler_that_cannot_start_says_why_and_training_goes_on(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_AGENT", raising=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("cgroup files vanished")

    monkeypatch.setattr("harness.monitor.sampler.ResourceSampler.__init__", broken)
    monitor = ExperimentMonitor("broken", save_dir=tmp_path)
    with monitor.mode("m", resource_interval=0.05):
        for _ in monitor.batches(range(3)):
            pass
    usage = monitor.results()["modes"]["m"]["resource_usage"]
    assert usage["unavailable"]["resources"] == "sampler failed to start: cgroup files vanished"
    assert pynvml is not None
