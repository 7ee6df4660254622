"""What a mode runs: a command line, never a shell.

``experiment_config.json``'s ``modes`` maps a name to a script path (the form ``harness new``
writes) or an object::

    "baseline":     {"command": ["python", "main.py", "--epochs", "1", "--batch_size", "20"]},
    "optimization": {"command": "python main.py --epochs 1 --batch_size 80", "env": {"OMP_NUM_THREADS": "2"}},
    "amp":          {"script": "train.py", "args": ["--amp"], "instrument": false}

A string command is split with :func:`shlex.split` (quotes group words; ``|``, ``>``, ``$X`` and
``;`` reach the program as they are). :class:`ModeSpec` checks the form when the config loads;
:func:`check_mode_files` checks it against the folder (the program and every ``.py`` file it
names exist inside it) before any image is built or run started. ``harness run --mode
NAME='python main.py --amp'`` adds a one-off mode (:func:`parse_cli_mode`).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from harness.errors import ConfigError, UsageError

PYTHONS = ("python", "python3")  # run with the interpreter of the run's environment (image or venv)
RESERVED_MODE_NAMES = ("all", "plans", "comparison")
MODE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _inside(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts


class ModeSpec(BaseModel):
    """One mode: a command (or a script and its arguments), extra environment, instrumentation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | list[str] | None = Field(
        None, description="The command line: a string (split like a shell would, but never run by one) or a list.")
    script: str | None = Field(None, description="A .py file inside the experiment, run with python (with `args`).")
    args: list[str] = Field(default_factory=list, description="Arguments after `script`.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables (not HARNESS_*).")
    instrument: bool = Field(True, description="Time steps of unmodified PyTorch/Keras scripts automatically.")

    @model_validator(mode="after")
    def _check(self) -> "ModeSpec":
        if (self.command is None) == (self.script is None):
            raise ValueError("give either `command` or `script`")
        if self.args and self.script is None:
            raise ValueError("args: only with `script` (put the arguments in `command`)")
        if self.script is not None and (not self.script.endswith(".py") or not _inside(self.script)):
            raise ValueError(f"script: must be a .py file inside the experiment (got {self.script!r})")
        if isinstance(self.command, str):
            try:
                words = shlex.split(self.command)
            except ValueError as e:
                raise ValueError(f"command: cannot be split into words ({e}): {self.command!r}") from None
            if not words:
                raise ValueError("command: is empty")
        elif self.command is not None and (not self.command or not self.command[0]):
            raise ValueError("command: is empty")
        for key in self.env:
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"env: {key!r} is not a valid variable name")
            if key.upper().startswith("HARNESS_"):
                raise ValueError(f"env: {key} is harness's own; modes may not set HARNESS_* variables")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    @property
    def argv(self) -> list[str]:
        """The command as a list of words; the program first."""
        if self.script is not None:
            return ["python", self.script, *self.args]
        if isinstance(self.command, str):
            return shlex.split(self.command)
        return list(self.command or [])

    @property
    def field(self) -> str:
        """The config field that holds the command (for messages)."""
        return "script" if self.script is not None else "command"


def mode_spec(value: str | ModeSpec | dict[str, Any]) -> ModeSpec:
    """A config value as a :class:`ModeSpec` (a script path becomes ``script``).

    Raises:
        ValueError: naming the bad part, for a dict that is not a valid mode.
    """
    if isinstance(value, ModeSpec):
        return value
    if isinstance(value, str):
        return ModeSpec.model_construct(script=value, args=[], env={}, instrument=True, command=None)
    try:
        return ModeSpec.model_validate(value)
    except ValidationError as e:
        item = e.errors()[0]
        loc = str(item["loc"][0]) if item["loc"] else ""
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field; a mode takes command, script, args, env, instrument"
        elif loc == "command" and not item["type"].startswith("value_error"):
            msg = f"must be a string or a list of strings (got {item.get('input')!r})"
        elif not item["type"].startswith("value_error"):
            msg = f"{msg} (got {item.get('input')!r})"
        raise ValueError(f"{loc}: {msg}" if loc else msg) from None


def validate_mode_value(name: str, value: Any) -> str | ModeSpec:
    """What ``ExperimentConfig`` keeps for one mode: the script path as given, or a ModeSpec.

    Raises:
        ValueError: ``NAME: ...`` / ``NAME.field: ...``.
    """
    if not MODE_NAME.fullmatch(name) or name in RESERVED_MODE_NAMES:
        raise ValueError(f"{name!r} is not a usable mode name")
    if isinstance(value, str):
        if not value.endswith(".py") or not _inside(value):
            raise ValueError(f"{name}: script must be a .py file inside the experiment (got {value!r})")
        return value
    if not isinstance(value, (dict, ModeSpec)):
        raise ValueError(f"{name}: must be a script path or an object with `command` or `script` "
                         f"(got {type(value).__name__})")
    try:
        return mode_spec(value)
    except ValueError as e:
        raise ValueError(f"{name}.{e}" if ":" in str(e).split(" ")[0] else f"{name}: {e}") from None


def check_mode_files(name: str, spec: ModeSpec | str, folder: Path, where: str = "modes",
                     field: str | None = None) -> None:
    """The program is python/python3 or an executable inside ``folder``; every ``.py`` it names exists.

    Raises:
        ConfigError: one line naming the field, e.g. ``modes.amp.command: train.py not found in ...``.
    """
    if field is None:
        field = f"{where}.{name}" if isinstance(spec, str) else f"{where}.{name}.{spec.field}"
    spec = mode_spec(spec)
    argv = spec.argv
    program = argv[0]
    if program not in PYTHONS:
        target = folder / program
        if not _inside(program) or ("/" not in program and not target.is_file()):
            raise ConfigError(f"{field}: the program must be python, python3 or an executable inside the "
                              f"experiment folder (got {program!r})",
                              hint="run tools as python modules (python -m torch.distributed.run ...) or "
                                   "from a script in the folder (./run.sh)")
        if not target.is_file():
            raise ConfigError(f"{field}: {program} not found in the experiment folder {folder}")
        if not os.access(target, os.X_OK):
            raise ConfigError(f"{field}: {program} is not executable", hint=f"chmod +x {target}")
    for word in _named_files(argv[1:]):
        if not _inside(word):
            raise ConfigError(f"{field}: {word} is not inside the experiment folder (the container sees only it)")
        if not (folder / word).is_file():
            raise ConfigError(f"{field}: {word} not found in the experiment folder {folder}")


def _named_files(words: list[str]) -> list[str]:
    """The ``.py`` files among a command's arguments (not options; nothing after ``-c CODE``)."""
    out = []
    for word in words:
        if word == "-c":
            break
        if word.endswith(".py") and not word.startswith("-") and "=" not in word:
            out.append(word)
    return out


def program_argv(spec: ModeSpec | str, python: str) -> list[str]:
    """The words to execute: ``python``/``python3`` become ``python`` (this environment's interpreter);
    a program inside the folder gets a ``./`` so that it is not looked up on ``PATH``."""
    argv = mode_spec(spec).argv
    program = argv[0]
    if program in PYTHONS:
        program = python
    elif "/" not in program:
        program = "./" + program
    return [program, *argv[1:]]


def parse_cli_mode(text: str) -> tuple[str, ModeSpec]:
    """``NAME=COMMAND`` from ``harness run --mode`` as a one-off mode.

    Raises:
        UsageError: naming ``--mode`` and what is wrong.
    """
    name, sep, command = text.partition("=")
    name = name.strip()
    if not sep or not name or not command.strip():
        raise UsageError(f"--mode: expected NAME='COMMAND', e.g. amp='python main.py --amp' (got {text!r})")
    try:
        value = validate_mode_value(name, {"command": command})
    except ValueError as e:
        raise UsageError(f"--mode: {e}") from None
    assert isinstance(value, ModeSpec)
    return name, value
