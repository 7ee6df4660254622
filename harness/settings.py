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

from harness.config import parse_gpus, parse_size
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


@dataclass(frozen=True)
class GpuRequest:
    """A normalised GPU request: ``none``, ``all``, ``count:N`` or device ids ``0,2`` (see ``parse_gpus``)."""

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

    def device_ids(self) -> list[str]:
        """The ids of a request that names devices (``[]`` for none / all / count)."""
        return [] if self.spec in ("none", "all") or self.spec.startswith("count:") else self.spec.split(",")

    def device_requests(self, assigned: list[str] | None = None) -> list[Any]:
        """Docker ``DeviceRequest``s; GPUs a scheduler assigned win over the request."""
        from docker.types import DeviceRequest

        if assigned:
            return [DeviceRequest(device_ids=[str(g) for g in assigned], capabilities=[["gpu"]])]
        if self.spec == "none":
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
        if self.spec == "all":
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
        if self.spec == "all":
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
        if self.spec == "none":
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
    return RunSettings(gpus=gpus, cpus=options.cpus if options.cpus is not None else res.cpus, memory=memory,
                       shm=shm, network=options.network or config.network, ipc=options.ipc,
                       timeout=options.timeout if options.timeout is not None else config.timeout,
                       sampling_interval=config.sampling_interval)
