"""The resource sampler on this machine's real cgroup, and its background thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from harness.monitor.sampler import ResourceSampler, SamplerThread


def test_a_sample_has_raw_counters_and_both_timestamps() -> None:
    sampler = ResourceSampler()
    first = sampler.sample()
    time.sleep(0.05)
    second = sampler.sample()
    assert second["m"] > first["m"] and abs(second["t"] - time.time()) < 5
    assert second["cpu"]["usage_ns"] >= first["cpu"]["usage_ns"]
    assert "cores" not in first["cpu"] and second["cpu"]["cores"] >= 0
    assert second["memory"]["working_set"] > 0
    if Path("/proc/pressure/cpu").exists():
        assert "some" in first["psi"]["cpu"]
        assert "psi" not in second  # PSI is read at most once a second (its averages span 10 s)
    sampler.close()


def test_sampling_opens_no_files_and_starts_no_processes() -> None:
    """Files are opened once and re-read; a sample costs no open() and no fork."""
    sampler = ResourceSampler()
    sampler.sample()
    fds = set(os.listdir("/proc/self/fd"))
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text()
    for _ in range(50):
        sampler.sample()
    assert set(os.listdir("/proc/self/fd")) == fds
    assert Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text() == children
    sampler.close()


def test_sampler_thread_samples_at_its_interval_off_the_calling_thread() -> None:
    samples: list[dict] = []
    threads: set[str] = set()

    def sink(sample: dict) -> None:
        threads.add(threading.current_thread().name)
        samples.append(sample)

    thread = SamplerThread(ResourceSampler(), 0.05, sink).start()
    time.sleep(0.55)
    thread.stop()
    assert 5 <= len(samples) <= 16  # one at start, ~10 over 0.5 s (fewer on a loaded CI box), one at stop
    assert "harness-sampler" in threads
    ms = [s["m"] for s in samples]
    assert ms == sorted(ms)
    assert all("cores" in s["cpu"] for s in samples[1:])


def test_a_failing_sink_does_not_stop_sampling() -> None:
    calls = []

    def sink(sample: dict) -> None:
        calls.append(1)
        raise RuntimeError("disk full")

    thread = SamplerThread(ResourceSampler(), 0.02, sink).start()
    time.sleep(0.2)
    thread.stop(final_sample=False)
    assert len(calls) >= 3


def test_psutil_fallback_without_a_cgroup_filesystem(tmp_path: Path) -> None:
    sampler = ResourceSampler(root=str(tmp_path))
    sampler.sample()
    busy = time.monotonic() + 0.1
    while time.monotonic() < busy:
        pass
    sample = sampler.sample()
    assert sample["cpu"]["cores"] > 0.2 and sample["cpu"]["limit_source"] == "host"
    assert sample["memory"]["working_set"] > 10 * 2**20  # this Python's RSS
    assert "psutil" in sample["unavailable"]["cgroup"]
