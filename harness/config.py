"""The experiment's ``experiment_config.json``: one validated model, one loader.

Validation errors name the field, e.g.
``experiment_config.json: resources.cpus: must be > 0 (got -1)``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError,
                      field_validator)

from harness.errors import ConfigError, HarnessError
from harness.modes import ModeSpec, validate_mode_value
from harness.safe_json import one_line

CONFIG_FILENAME = "experiment_config.json"
SCHEMA_VERSION = 1
DEFAULT_PIDS = 4096  # processes + threads per run: plenty for DataLoader workers, not for a fork bomb

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?\s*$", re.IGNORECASE)
_MODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MODE_FIELD = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63}(?:\.[a-z_]+)?): (.*)$")
# Docker refuses less memory than this for a container (its own minimum is 6 MB).
MIN_MEMORY = 6 * 1024**2
# Sizes are int64 nanoseconds/bytes in the engine: anything near that is a typo, not a machine.
MAX_SIZE = 2**62
MAX_CPUS = 4096.0
MAX_TIMEOUT = 366 * 24 * 3600.0  # a year: longer is a typo (and overflows timers)
MAX_SEED = 2**32 - 1  # numpy's and most frameworks' seed range

# A JSON number: a strict int or float (no strings, no booleans), finite.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def parse_size(value: str | int) -> int:
    """Parse a Docker-style size ("512m", "8g", "1.5GiB", 1048576) into bytes.

    Raises:
        ValueError: when the text is not a size.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"must be > 0 (got {value})")
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a size like 512m or 8g (got {type(value).__name__})")
    match = _SIZE_RE.match(value)
    if not match:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"not a size like 512m or 8g (got {shown!r})")
    number = float(match.group(1))
    unit = match.group(2).lower()
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[unit]
    if not math.isfinite(number * factor) or number * factor > MAX_SIZE:
        raise ValueError(f"is far too large (got {value[:40]!r})")
    size = int(number * factor)
    if size <= 0:
        raise ValueError(f"must be > 0 (got {value!r})")
    return size


def parse_pids(value: Any) -> int:
    """A pids limit: a whole number >= 1 (a run needs at least its own process).

    Raises:
        ValueError: when the value is not such a number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"must be a whole number >= 1 (got {value!r})")
    number = int(value)
    if number < 1:
        raise ValueError(f"must be >= 1 (got {number})")
    return number


def check_memory(value: str | int) -> int:
    """Parse a memory limit and hold it to Docker's floor.

    Raises:
        ValueError: not a size, or below 6 MB.
    """
    size = parse_size(value)
    if size < MIN_MEMORY:
        raise ValueError(f"must be at least 6m, Docker's minimum for a container (got {value!r})")
    return size


def check_cpus(value: float | None) -> float | None:
    """CPU cores: > 0 and not absurd (the host's own count is checked when a run is made).

    Raises:
        ValueError: saying what is allowed.
    """
    if value is not None and not value > 0:
        raise ValueError(f"must be > 0 (got {value:g})")
    if value is not None and value > MAX_CPUS:
        raise ValueError(f"must be at most {MAX_CPUS:g} (got {value:g})")
    return value


def check_timeout(value: float | None) -> float | None:
    """Seconds before a run is stopped: > 0 and at most a year.

    Raises:
        ValueError: saying what is allowed.
    """
    if value is not None and not value > 0:
        raise ValueError(f"must be > 0 seconds (got {value:g})")
    if value is not None and value > MAX_TIMEOUT:
        raise ValueError(f"must be at most a year, {MAX_TIMEOUT:g} seconds (got {value:g})")
    return value


def parse_gpus(value: str | int | None) -> str:
    """Normalise a GPU request: "auto", "none", "all", a count ("count:2"), or device ids ("0", "0,2").

    A JSON number is a count (0: none); a string of digits names devices, so "0" is device 0.
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        raise ValueError(f"not a GPU request: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be >= 0 (got {value})")
        return "none" if value == 0 else f"count:{value}"
    text = str(value).strip().lower()
    if text in ("", "none"):
        return "none"
    if text in ("all", "auto"):
        return text
    if text.startswith("count:") and text[6:].isdigit():
        return text
    parts = [p.strip() for p in text.split(",")]
    if all(p and (p.isdigit() or p.startswith("gpu-")) for p in parts):
        return ",".join(parts)
    raise ValueError(f"must be 'auto', 'all', 'none', a count like 'count:2', or device ids like '0' or '0,2' "
                     f"(got {value!r})")


def check_seed(value: int) -> int:
    """A seed: 0 to 2**32 - 1, the range numpy and most frameworks take.

    Raises:
        ValueError: saying the range.
    """
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"must be between 0 and {MAX_SEED} (got {_short(value)})")
    return value


def _keeps(check: Callable[[Any], Any]) -> AfterValidator:
    """A validator that runs ``check`` for its error and keeps the value as written."""

    def run(value: Any) -> Any:
        check(value)
        return value

    return AfterValidator(run)


# Field types with one rule each, shared by the config, the flags (overrides.RunOverrides) and a
# plan's state.json, so that a bad value is refused alike wherever it is written.
Cpus = Annotated[Number, AfterValidator(check_cpus)]
Timeout = Annotated[Number, AfterValidator(check_timeout)]
MemoryLimit = Annotated[str, _keeps(check_memory)]
Size = Annotated[str, _keeps(parse_size)]
PidsLimit = Annotated[int, BeforeValidator(parse_pids)]
GpuRequest = Annotated[str, _keeps(parse_gpus)]
Seed = Annotated[StrictInt, AfterValidator(check_seed)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Resources(_Model):
    """Limits applied to each run's container (ignored by the local backend, except gpus)."""

    cpus: Cpus | None = Field(None, description="CPU cores the container may use (None: no limit).")
    memory: MemoryLimit | None = Field("8g", description="Memory limit, Docker style: 512m, 8g (None: no limit).")
    gpus: str = Field("auto", description="'auto' (every GPU NVML sees, when the backend can hand them to a run; "
                                          "else none), 'none', 'all', 'count:N' or device ids '0' or '0,2'.")
    shm_size: Size = Field("2g", description="Size of /dev/shm; DataLoader workers pass batches through it.")
    pids: PidsLimit | None = Field(DEFAULT_PIDS, description="Most processes and threads a run's container may have "
                                   "(None: no limit); stops a fork bomb from taking the host down.")

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v: Any) -> str:
        return parse_gpus(v)


class QualityMetric(_Model):
    """The metric that says whether a run learned as well: a ``log_metric`` name, or accuracy / loss."""

    name: str = Field(..., description="A name the script passes to log_metric, or 'accuracy' or 'loss'.")
    better: Literal["higher", "lower"] = Field("higher", description="Which direction is better.")
    reduce: Literal["final", "best"] = Field("final", description="Per run: the last logged value, or the best.")


class ExperimentConfig(_Model):
    """Everything harness needs to know about one competition's experiment."""

    schema_version: StrictInt = Field(SCHEMA_VERSION, description="Version of this file's format.")
    competition: str = Field(..., description="Competition name, e.g. birdclef_2023.")
    kaggle_slug: str = Field(..., description="The competition's slug on Kaggle, e.g. birdclef-2023.")
    framework: Literal["pytorch", "tensorflow"] = Field(..., description="Training framework.")
    modes: dict[str, str | ModeSpec] = Field(
        default_factory=lambda: {"baseline": "baseline.py", "optimization": "optimization.py"},
        description="Mode name to the script that runs it (relative to the experiment folder), or to an "
                    "object: {command: str | [str], env, instrument} or {script, args, env, instrument}.",
    )
    seeds: list[StrictInt] = Field(default_factory=lambda: [0, 1, 2], description="Seeds each mode runs with.")
    epochs: StrictInt = Field(2, description="Training epochs per run.")
    batch_size: StrictInt = Field(32, description="Batch size.")
    data_dir: str = Field("data", description="Folder with the competition's data, relative to the experiment.")
    resources: Resources = Field(default_factory=Resources, description="Container limits.")
    sampling_interval: Number = Field(1.0, description="Seconds between resource samples.")
    network: Literal["none", "bridge", "host"] = Field("none", description="Container network.")
    timeout: Timeout | None = Field(None, description="Seconds before a run is stopped (None: no limit).")
    base_image: str | None = Field(None, description="Framework image to build on (default: harness/<framework>).")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Free-form values passed to the scripts.")
    primary_metric: Literal["auto", "end_to_end", "steady_throughput"] = Field(
        "auto", description="What compare's headline leads with: end-to-end time, steady-state throughput, or "
                            "auto (end-to-end for runs under 10 minutes); docs/statistics.md says why.")
    quality_metric: QualityMetric | None = Field(
        None, description="The metric compare checks for 'faster but learns worse' (default: accuracy and loss).")

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"is {v}, newer than this harness understands ({SCHEMA_VERSION}); upgrade harness")
        if v < 1:
            raise ValueError(f"must be >= 1 (got {v})")
        return v

    @field_validator("competition")
    @classmethod
    def _competition(cls, v: str) -> str:
        if not _MODE_RE.fullmatch(v):
            raise ValueError(f"must be 1-64 lowercase letters, digits, '_' or '-' (got {_short(v)!r})")
        return v

    @field_validator("modes", mode="before")
    @classmethod
    def _modes(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v  # pydantic says what type it wants
        if not v:
            raise ValueError("must name at least one mode")
        return {name: validate_mode_value(name, value) for name, value in v.items()}

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("must list at least one seed")
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a seed (got {v})")
        for seed in v:
            check_seed(seed)
        return v

    @field_validator("epochs", "batch_size")
    @classmethod
    def _positive_int(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"must be > 0 (got {v})")
        if v >= 2**31:
            raise ValueError(f"must be below 2**31 (got {_short(v)})")
        return v

    @field_validator("sampling_interval")
    @classmethod
    def _interval(cls, v: float) -> float:
        if not 0.01 <= v <= 60:
            raise ValueError(f"must be between 0.01 and 60 seconds (got {v:g})")
        return v

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, v: str) -> str:
        if not v or _odd(v) or Path(v).is_absolute() or ".." in Path(v).parts:
            raise ValueError(f"must be a folder inside the experiment (got {_short(v)!r})")
        return v


def _short(value: Any, limit: int = 40) -> Any:
    """A value to quote in a one-line error: long text and long lists cut short."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    if isinstance(value, list) and len(str(value)) > limit:
        return str(value)[:limit] + "...]"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**12:
        return f"{value:.3g}"
    return value


def _odd(text: str) -> bool:
    """True for text with control characters (NUL, newlines): never part of a usable path."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _format_validation_error(err: ValidationError, filename: str) -> list[str]:
    problems = []
    for item in err.errors():
        loc = ".".join(one_line(str(p), 60) for p in item["loc"]) or "(top level)"  # keys are the file's: any text
        msg = " ".join(str(item["msg"]).split())
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        mode_field = _MODE_FIELD.match(msg) if loc == "modes" else None
        if mode_field:  # "modes: amp.command: ..." reads better as "modes.amp.command: ..."
            loc, msg = f"modes.{mode_field.group(1)}", mode_field.group(2)
        if item["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        elif item["type"] == "missing":
            msg = "is required"
        elif item["type"] in ("int_parsing", "float_parsing", "int_type", "float_type", "string_type",
                              "bool_type", "dict_type", "list_type", "literal_error", "int_from_float",
                              "finite_number"):
            msg = f"{msg} (got {_short(item.get('input'))!r})"
        problems.append(f"{filename}: {loc}: {msg}")
    return problems


def parse_config(data: Any, filename: str = CONFIG_FILENAME) -> ExperimentConfig:
    """Validate already-parsed JSON.

    Raises:
        ConfigError: listing every bad field as ``file: field.path: message``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}: must hold a JSON object, not {type(data).__name__}",
                          hint="start from the file `harness new` writes")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        problems = _format_validation_error(e, filename)
        message = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
        raise ConfigError(message, problems=problems) from e


def load_config(path: Path) -> ExperimentConfig:
    """Read and validate ``experiment_config.json``.

    Raises:
        ConfigError: when the file is missing, unreadable, not JSON, or invalid.
    """
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: not found", hint="run `harness new NAME` to create an experiment") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})") from e
    return parse_config(parse_json_file(raw, name, ConfigError), name)


def parse_json_file(raw: bytes, name: str, error: Callable[[str], HarnessError] = ConfigError) -> Any:
    """Parse a small JSON file harness validates field by field (config, plan state).

    NaN, infinities and numbers out of range are refused naming the field; so are deep nesting,
    bytes that are not UTF-8, and text that is not JSON.

    Raises:
        ConfigError (or what ``error`` makes): one line, starting with ``name``.
    """
    from harness.safe_json import JsonInputError, check_finite, parse

    try:
        data = parse(raw, allow_nan=True)
        check_finite(data)
    except JsonInputError as e:
        if e.kind in ("empty", "cut", "syntax"):
            raise error(f"{name}: not valid JSON: {e.detail}") from None
        raise error(f"{name}: {e}") from None
    return data


def config_to_json(config: ExperimentConfig) -> str:
    """Serialise a config the way ``harness new`` writes it."""
    return json.dumps(config.model_dump(mode="json"), indent=2) + "\n"
