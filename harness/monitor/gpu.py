"""GPUs through NVML (``nvidia-ml-py``): one handle per device this container sees, keyed by UUID.

Why NVML and not ``nvidia-smi``: a query costs microseconds, forking ``nvidia-smi`` (what
GPUtil does) tens of milliseconds. Why UUIDs: NVML orders devices by PCI bus, CUDA by
speed unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so an index means different GPUs to each.

Failure is local: no library, no driver or no device leaves the GPU part absent with a
reason; one metric a device does not support (power on some boards, clocks under MIG) is
marked unavailable for that device and metric and never queried again, and the rest go on.

GPU memory of *this run*: NVML reports host PIDs, which a container with its own PID
namespace cannot match to its processes. ``attribution`` says what was used: ``process``
(the NVML PIDs of our process tree were found), or ``device`` (whole-device figures, right
under exclusive passthrough). The framework allocator's peak is recorded by the monitor.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any


class GpuProbe:
    """Owns the NVML session and the device handles; :meth:`read` returns one sample's ``gpus``."""

    def __init__(self, nvml: Any = None, shared: bool = False) -> None:
        """``nvml`` is the ``pynvml`` module; tests pass a recorded-response stand-in.

        ``shared``: the process-wide probe of :func:`shared_probe`; :meth:`close` leaves its NVML
        session open for the next mode and :meth:`shutdown` (at exit) ends it.
        """
        self.shared = shared
        self.devices: list[dict[str, Any]] = []  # {index, uuid, name, handle, unsupported:set}
        self.reason: str | None = None
        self.driver: str | None = None
        self.cuda_driver: str | None = None
        self.attribution = "device"
        self._nvml = nvml
        self._ok = False
        self._init()

    def _init(self) -> None:
        if self._nvml is None:
            try:
                import pynvml  # nvidia-ml-py
            except ImportError:
                self.reason = "nvidia-ml-py (pynvml) is not installed"
                return
            self._nvml = pynvml
        nv = self._nvml
        try:
            nv.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reason = f"no NVIDIA driver (NVML: {e})"
            return
        self._ok = True
        try:
            self.driver = _text(nv.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver = None
        try:
            v = int(nv.nvmlSystemGetCudaDriverVersion())
            self.cuda_driver = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:
            self.cuda_driver = None
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as e:
            self.reason = f"NVML cannot count devices ({e})"
            return
        visible = _visible_filter(os.environ.get("CUDA_VISIBLE_DEVICES"))
        for index in range(count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nv.nvmlDeviceGetUUID(handle))
            except Exception:
                continue  # a device lost or hidden by MIG: skip it, keep the others
            if visible is not None and str(index) not in visible and uuid not in visible \
                    and not any(uuid.startswith(v) for v in visible if v.startswith("GPU-")):
                continue
            try:
                name = _text(nv.nvmlDeviceGetName(handle))
            except Exception:
                name = "unknown"
            self.devices.append({"index": index, "uuid": uuid, "name": name, "handle": handle,
                                 "unsupported": {}})
        if not self.devices:
            self.reason = "NVML found no GPU visible to this container"

    @property
    def available(self) -> bool:
        return self._ok and bool(self.devices)

    def names(self) -> list[dict[str, Any]]:
        return [{"index": d["index"], "uuid": d["uuid"], "name": d["name"]} for d in self.devices]

    def read(self, pids: set[int] | None = None, full: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
        """``({uuid: {index, util, mem_used, ...}}, unavailable)`` with memory in MB, power in W.

        ``pids``: our process tree; when NVML reports any of them, per-process memory is
        added as ``proc_mem_used`` and attribution becomes ``process``. ``full=False`` is a
        fast sampler's light tick: utilisation, and device memory unless memory is attributed
        per process (a light tick must not mix device figures into a per-process series);
        power, temperature, clocks and the process list wait for the next full tick.
        """
        unavailable: dict[str, str] = {}
        if not self.available:
            unavailable["gpu"] = self.reason or "no GPU"
            return {}, unavailable
        nv = self._nvml
        out: dict[str, Any] = {}
        for dev in self.devices:
            h = dev["handle"]
            rec: dict[str, Any] = {"index": dev["index"]}
            skip = dev["unsupported"]

            def query(metric: str, fn: Any) -> None:
                if metric in skip:
                    return
                try:
                    rec[metric] = fn()
                except Exception as e:  # NVMLError_NotSupported, NoPermission, GpuIsLost...
                    if _is_not_supported(nv, e):
                        skip[metric] = f"not supported by {dev['name']}"
                    else:
                        unavailable[f"gpu.{dev['uuid']}.{metric}"] = str(e) or type(e).__name__

            query("util", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu)
            if not full:
                if self.attribution == "device":
                    query("mem_used", lambda: round(nv.nvmlDeviceGetMemoryInfo(h).used / 2**20, 1))
                out[dev["uuid"]] = rec
                continue
            mem: dict[str, Any] = {}

            def memory() -> float:
                info = nv.nvmlDeviceGetMemoryInfo(h)
                mem["total"] = info.total
                return round(info.used / 2**20, 1)

            query("mem_used", memory)
            if "total" in mem:
                rec["mem_total"] = round(mem["total"] / 2**20, 1)
            query("power_w", lambda: round(nv.nvmlDeviceGetPowerUsage(h) / 1000.0, 2))
            query("temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            query("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
            if pids:
                used = self._process_memory(h, pids)
                if used is not None:
                    rec["proc_mem_used"] = round(used / 2**20, 1)
                    self.attribution = "process"
            for metric, why in skip.items():
                unavailable[f"gpu.{dev['uuid']}.{metric}"] = why
            out[dev["uuid"]] = rec
        return out, unavailable

    def _process_memory(self, handle: Any, pids: set[int]) -> int | None:
        """Bytes NVML attributes to ``pids`` on one device, ``None`` when none of them is listed."""
        nv = self._nvml
        try:
            procs = list(nv.nvmlDeviceGetComputeRunningProcesses(handle))
        except Exception:
            return None
        ours = [p for p in procs if getattr(p, "pid", None) in pids]
        if not ours:
            return None
        # usedGpuMemory is None when the driver cannot tell (Windows WDDM, some vGPU)
        return sum(int(p.usedGpuMemory or 0) for p in ours)

    def close(self) -> None:
        """End the NVML session, unless this is the process-wide probe (kept for the next mode)."""
        if not self.shared:
            self.shutdown()

    def shutdown(self) -> None:
        if self._ok:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._ok = False


_shared: GpuProbe | None = None
_shared_lock = threading.Lock()


def shared_probe() -> GpuProbe:
    """The process's one NVML session, made on first use and ended at exit.

    ``nvmlInit`` and the device handles cost tens of milliseconds with a GPU: paying that once
    per process, on the sampler thread that first needs it, keeps it off every mode's start.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = GpuProbe(shared=True)
            atexit.register(_shared.shutdown)
        return _shared


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_not_supported(nv: Any, error: Exception) -> bool:
    cls = getattr(nv, "NVMLError_NotSupported", None)
    if cls is not None and isinstance(error, cls):
        return True
    return getattr(error, "value", None) == getattr(nv, "NVML_ERROR_NOT_SUPPORTED", 3)


def _visible_filter(value: str | None) -> set[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a set of indices / UUIDs; ``None`` when it does not restrict."""
    if value is None or value.strip() in ("", "all"):
        return None if value is None or value.strip() == "all" else set()
    return {v.strip() for v in value.split(",") if v.strip()}
