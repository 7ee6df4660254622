"""The run options a user may override (flags of ``harness run``, ``options`` in a plan's state.json).

One pydantic model checks them wherever they come from, with the config's own field types
(:mod:`harness.config`: ``Cpus``, ``MemoryLimit``, ...): a bad ``--cpus`` and a bad ``options.cpus``
in a hand-edited state.json are refused alike, naming where the value came from.
:func:`check_runnable` adds what can only be checked against this machine and the experiment's
files (CPU cores, the mode scripts), so that nothing is built or written for a run that cannot work.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from harness.config import Cpus, GpuRequest, MemoryLimit, PidsLimit, Size, Timeout
from harness.errors import UsageError
from harness.fingerprint import SETTING_FLAGS

if TYPE_CHECKING:
    from harness.experiment import Experiment

# Field -> its flag: the settings a fingerprint names, and --rebuild.
FLAGS = {**SETTING_FLAGS, "rebuild": "--rebuild"}


class RunOverrides(BaseModel):
    """Command-line overrides of the config; ``None`` means: the config's value."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    backend: Literal["auto", "docker", "local"] = Field("auto", description="Where runs execute.")
    gpus: GpuRequest | None = Field(None, description="'none', 'all', 'count:N' or device ids.")
    cpus: Cpus | None = Field(None, description="CPU cores per run.")
    memory: MemoryLimit | None = Field(None, description="Memory limit per run (at least 6m).")
    shm_size: Size | None = Field(None, description="Size of /dev/shm.")
    network: Literal["none", "bridge", "host"] | None = Field(None, description="Container network.")
    ipc: Literal["private", "host"] = Field("private", description="IPC namespace.")
    timeout: Timeout | None = Field(None, description="Seconds before a run is stopped.")
    rebuild: StrictBool = Field(False, description="Rebuild the experiment image.")
    pids: PidsLimit | None = Field(None, description="Most processes and threads per run.")


def validation_problems(err: ValidationError, prefix: str = "", flags: bool = False) -> list[str]:
    """``field: message`` lines of a pydantic error; with ``flags``, fields named as their flags."""
    from harness.config import _format_validation_error

    out = []
    for line, item in zip(_format_validation_error(err, "-"), err.errors()):
        text = line[len("-: "):]
        if flags and item["loc"] and item["loc"][0] in FLAGS:
            text = FLAGS[str(item["loc"][0])] + text[len(str(item["loc"][0])):]
        out.append(prefix + text)
    return out


def check_flags(**values: Any) -> RunOverrides:
    """Validate ``harness run``'s override flags before anything is read, built or written.

    Raises:
        UsageError: naming the flag and what it accepts.
    """
    try:
        return RunOverrides.model_validate(values)
    except ValidationError as e:
        raise UsageError(validation_problems(e, flags=True)[0]) from None


def host_cores() -> int:
    return os.cpu_count() or 1


def check_runnable(experiment: "Experiment", options: dict[str, Any], *, executor: str = "local") -> None:
    """Refuse more CPUs than the host has, which the engine would only refuse after the image build.

    The config's ``resources.cpus`` is held to this machine only where a container gets it (not the
    local backend, not on a Ray cluster, whose nodes may be bigger). Missing mode scripts are
    ``Experiment.check_modes``'s.

    Raises:
        UsageError: naming the flag or the field.
    """
    from harness.config import CONFIG_FILENAME

    if executor == "ray":
        return
    cpus_flag, backend = options.get("cpus"), options.get("backend", "auto")
    cores = host_cores()
    if cpus_flag is not None and cpus_flag > cores:
        raise UsageError(f"--cpus: {cpus_flag:g} is more than this machine's {cores} CPU cores")
    config_cpus = experiment.config.resources.cpus
    if cpus_flag is None and backend != "local" and config_cpus is not None and config_cpus > cores:
        raise UsageError(f"{CONFIG_FILENAME}: resources.cpus: {config_cpus:g} is more than this machine's "
                         f"{cores} CPU cores", hint="lower it, or override it with --cpus")
