"""The host's GPUs as NVML sees them: what ``gpus: auto`` resolves to and what parallel slots draw from.

Host-side: a run's own GPU samples come from ``harness.monitor.gpu`` inside its container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class GpuInfo:
    """A GPU as NVML sees it; ``busy`` when some process already computes on it."""

    index: str
    uuid: str
    busy: bool = False


def detect_gpus() -> tuple[list[GpuInfo], str | None]:
    """The host's GPUs from NVML, or ([], why not) when there is no driver."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [], f"no NVIDIA driver ({e})"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            try:
                busy = bool(pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except pynvml.NVMLError:
                busy = False
            gpus.append(GpuInfo(index=str(i), uuid=uuid, busy=busy))
        return gpus, None
    finally:
        pynvml.nvmlShutdown()


def host_gpu_ids(gpus: list[GpuInfo] | None = None, visible: str | None = None) -> list[str]:
    """Indices of the GPUs NVML sees on this host (empty without a driver or a GPU).

    ``CUDA_VISIBLE_DEVICES`` (``visible``, default: the environment's), when set, keeps only the
    GPUs it names, by index or UUID: a user who hid GPUs from this shell means it for harness too.
    """
    gpus = detect_gpus()[0] if gpus is None else gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is None:
        return [gpu.index for gpu in gpus]
    names = {v.strip() for v in visible.split(",") if v.strip()}
    return [gpu.index for gpu in gpus if gpu.index in names or gpu.uuid in names
            or any(n.startswith("GPU-") and gpu.uuid.startswith(n) for n in names)]
