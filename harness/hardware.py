"""What a machine is, in the terms that make two timings comparable: CPU, GPUs, driver, identity.

Recorded per run when runs spread over machines (Ray), so ``compare`` can say when the modes ran
on different hardware, and tell two Ray nodes on one physical host (same machine id) apart from
two hosts. Reads only /proc, /etc and NVML; every part is optional (None when unknown).
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_id() -> str | None:
    """The host's systemd/dbus machine id: the same for every Ray node (or container) of one host."""
    for name in MACHINE_ID_FILES:
        try:
            text = Path(name).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return None


def gpu_facts() -> tuple[list[str], str | None]:
    """(GPU names, driver version) from NVML; ([], None) without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver: no GPUs
        return [], None
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        driver = pynvml.nvmlSystemGetDriverVersion()
        return names, driver.decode() if isinstance(driver, bytes) else str(driver)
    except Exception:  # noqa: BLE001 - a half-working driver: what we have
        return [], None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def node_hardware() -> dict[str, Any]:
    """This machine's hardware as recorded in ``run.hardware``."""
    gpus, driver = gpu_facts()
    return {"hostname": socket.gethostname(), "machine_id": machine_id(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "gpu_names": gpus, "gpu_count": len(gpus), "driver": driver}


def describe(hw: dict[str, Any] | None) -> str:
    """One phrase for a machine: 'Intel Xeon ... x8, 2x A100 (driver 550.54), host gpu-1'."""
    if not hw:
        return "unknown hardware"
    parts = [f"{hw.get('cpu_model') or 'unknown CPU'} x{hw.get('cpu_count') or '?'}"]
    gpus = hw.get("gpu_names") or []
    if gpus:
        names = sorted(set(gpus))
        parts.append(f"{len(gpus)}x {'/'.join(names)}" + (f" (driver {hw['driver']})" if hw.get("driver") else ""))
    else:
        parts.append("no GPU")
    if hw.get("hostname"):
        parts.append(f"host {hw['hostname']}")
    return ", ".join(parts)


def hardware_key(hw: dict[str, Any] | None) -> tuple[Any, ...]:
    """What must match for two machines to count as the same hardware (not the same host)."""
    hw = hw or {}
    return (hw.get("cpu_model"), hw.get("cpu_count"), tuple(sorted(hw.get("gpu_names") or [])), hw.get("driver"))
