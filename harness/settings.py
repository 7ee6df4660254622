"""A run's settings, resolved once: the command line's flags over the experiment config, checked.

``resolve_settings`` is the one place where "the flag, else the config" is written and where a
bad flag becomes a ``UsageError`` that names it; backends, the plan's slots and Ray read the
frozen :class:`RunSettings` it returns. :class:`GpuRequest` answers every question asked of a
GPU request (Docker device requests, ``CUDA_VISIBLE_DEVICES``, the pool parallel slots draw
from, how many GPUs a Ray task reserves), so the GPU string is parsed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config import parse_gpus, parse_pids, parse_size
from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.config import ExperimentConfig


@dataclass
class RunOptions:
    """Overrides from the command line; ``None`` means: take the experiment config's value."""

    backend: str = "auto"  # auto | docker | local
    gpus: str | None = None
    cpus: float | None = None
    memory: str | None = None
    shm_size: str | None = None
    network: str | None = None
    ipc: str = "private"
    timeout: float | None = None
    rebuild: bool = False
    pids: int | None = None


@dataclass(frozen=True)
class GpuRequest:
    """A normalised GPU request: ``auto``, ``none``, ``all``, ``count:N`` or device ids ``0,2`` (see ``parse_gpus``).

    ``auto`` is resolved once per plan (:meth:`resolve`) into device ids or ``none``.
    """

    spec: str = "none"

    @classmethod
    def parse(cls, value: str | int | None) -> "GpuRequest":
        """Raises ValueError when ``value`` is not a GPU request."""
        return cls(parse_gpus(value))

    def __str__(self) -> str:
        return self.spec

    @property
    def wanted(self) -> bool:
        return self.spec != "none"

    @property
    def is_auto(self) -> bool:
        return self.spec == "auto"

    def resolve(self, detected: list[str], backend: str, runtime: bool) -> tuple["GpuRequest", bool]:
        """What ``auto`` becomes: the ``detected`` GPUs' ids, or ``none`` when there are none or when the
        Docker backend's engine has no GPU ``runtime``. Other requests stay as they are.

        Returns the request and whether GPUs were there but left unused for want of a runtime.
        """
        if not self.is_auto:
            return self, False
        if not detected:
            return GpuRequest("none"), False
        if backend == "docker" and not runtime:
            return GpuRequest("none"), True
        return GpuRequest(",".join(detected)), False

    def describe(self) -> str:
        """For a person: ``none``, ``all``, ``any 2``, ``device 0`` or ``devices 0,2``."""
        if self.spec in ("none", "all", "auto"):
            return self.spec
        if self.spec.startswith("count:"):
            return f"any {self.spec[6:]}"
        ids = self.device_ids()
        return f"device{'s' if len(ids) > 1 else ''} {','.join(ids)}"

    def device_ids(self) -> list[str]:
        """The ids of a request that names devices (``[]`` for auto / none / all / count)."""
        return [] if self.spec in ("none", "all", "auto") or self.spec.startswith("count:") else self.spec.split(",")

    def device_requests(self, assigned: list[str] | None = None) -> list[Any]:
        """Docker ``DeviceRequest``s; GPUs a scheduler assigned win over the request."""
        from docker.types import DeviceRequest

        if assigned:
            return [DeviceRequest(device_ids=[str(g) for g in assigned], capabilities=[["gpu"]])]
        if self.spec in ("none", "auto"):  # auto is resolved before a run (backends.resolve_gpus); unresolved: none
            return []
        if self.spec == "all":
            return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        if self.spec.startswith("count:"):
            return [DeviceRequest(count=int(self.spec[6:]), capabilities=[["gpu"]])]
        return [DeviceRequest(device_ids=self.device_ids(), capabilities=[["gpu"]])]

    def cuda_visible_devices(self, assigned: list[str] | None = None) -> str | None:
        """``CUDA_VISIBLE_DEVICES`` for a local process (``None``: leave it as it is)."""
        if assigned:
            return ",".join(str(g) for g in assigned)
        if self.spec in ("all", "auto"):
            return None
        if self.spec == "none":
            return ""
        if self.spec.startswith("count:"):
            return ",".join(str(i) for i in range(int(self.spec[6:])))
        return self.spec

    def pool(self, detected: list[str]) -> tuple[list[str], int]:
        """The GPUs a parallel plan draws from and how many each run gets.

        ``all`` and a list of ids give one GPU per run from that pool; ``count:N`` gives N per run
        from every GPU; ``none`` gives no GPUs.

        Raises:
            UsageError: when the request names GPUs that are not there.
        """
        if self.spec == "none":
            return [], 0
        if self.spec in ("all", "auto"):
            return list(detected), 1
        if self.spec.startswith("count:"):
            return list(detected), int(self.spec[6:])
        ids = self.device_ids()
        missing = [i for i in ids if i.isdigit() and detected and i not in detected]
        if missing:
            raise UsageError(f"GPU {','.join(missing)} is not on this machine (it has {','.join(detected)})",
                             hint="see `nvidia-smi -L`")
        return ids, 1

    def ray_gpus(self) -> float:
        """How many GPUs one run reserves on a Ray cluster.

        Raises:
            UsageError: for ``all``, which names no number Ray could reserve.
        """
        if self.spec in ("none", "auto"):  # auto on a cluster: no GPU unless asked for with count:N
            return 0.0
        if self.spec == "all":
            raise UsageError("--gpus all has no meaning on a Ray cluster; say how many GPUs each run needs",
                             hint="e.g. --gpus count:1")
        if self.spec.startswith("count:"):
            return float(self.spec[6:])
        return float(len(self.device_ids()))  # device ids: Ray picks which, we keep how many


@dataclass(frozen=True)
class RunSettings:
    """What one run gets, flags applied: limits in bytes and cores, ``None`` meaning no limit."""

    gpus: GpuRequest
    cpus: float | None
    memory: int | None
    shm: int
    network: str
    ipc: str
    timeout: float | None
    sampling_interval: float
    pids: int | None = None  # most processes + threads in the container (None: no limit)


def describe_settings(settings: RunSettings, *, backend: str, image: str, cpuset: str | None = None,
                      gpu_ids: list[str] | None = None) -> str:
    """One run's resolved settings for ``--dry-run``: backend, image, GPUs, cpus, memory, shm, network, timeout.

    ``cpuset`` and ``gpu_ids`` are a parallel slot's; assigned GPUs win over the request.
    """
    gpus = f"device{'s' if len(gpu_ids) > 1 else ''} {','.join(gpu_ids)}" if gpu_ids else settings.gpus.describe()
    cpus = f"{settings.cpus:g}" if settings.cpus is not None else "no limit"
    if cpuset:
        cpus += f" (cpuset {cpuset})"
    local = backend.startswith("local")
    memory = _bytes(settings.memory) if settings.memory is not None else "no limit"
    timeout = f"{settings.timeout:g} s" if settings.timeout is not None else "none"
    return (f"backend {backend}, image {image}, GPUs {gpus}, cpus {cpus}, memory {memory}, "
            f"shm {_bytes(settings.shm)}, network {'host' if local else settings.network}, timeout {timeout}"
            + ("; a local process: cpus, memory and shm are not enforced" if local else ""))


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


def _flag(flag: str, value: Any, parse: Any) -> Any:
    try:
        return parse(value)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def resolve_settings(config: "ExperimentConfig", options: RunOptions) -> RunSettings:
    """The run's settings: each flag given on the command line, else the config's value.

    The config's own values were validated when it was loaded, so a bad value here always
    comes from a flag, and the message names it.

    Raises:
        UsageError: naming the flag and what it accepts.
    """
    from dataclasses import asdict

    from harness.overrides import check_flags

    check_flags(**asdict(options))  # the flags' one model (also state.json's options): NaN, 1e300, 1k...
    res = config.resources
    gpus = GpuRequest.parse(res.gpus) if options.gpus is None else _flag("--gpus", options.gpus, GpuRequest.parse)
    memory = _flag("--memory", options.memory, parse_size) if options.memory is not None else \
        (parse_size(res.memory) if res.memory else None)
    shm = _flag("--shm-size", options.shm_size, parse_size) if options.shm_size is not None else \
        parse_size(res.shm_size)
    pids = _flag("--pids", options.pids, parse_pids) if options.pids is not None else res.pids
    return RunSettings(gpus=gpus, cpus=options.cpus if options.cpus is not None else res.cpus, memory=memory,
                       shm=shm, network=options.network or config.network, ipc=options.ipc,
                       timeout=options.timeout if options.timeout is not None else config.timeout,
                       sampling_interval=config.sampling_interval, pids=pids)
