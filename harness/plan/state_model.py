"""A plan's ``state.json``, validated like the config and the flags before ``--resume`` trusts it.

state.json is harness's own file, but it sits in a folder people edit, sync and script: a
run id ``../../../outside`` once made ``--resume`` write outside the experiment. Every field is
checked here (types strict, numbers finite, names safe for paths, options by the same model as
the flags, modes known to the experiment) and a bad one refused naming the file and the field,
before anything is locked, written or run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from harness.config import Number, Seed, parse_json_file
from harness.errors import PlanStateError
from harness.modes import ModeSpec
from harness.names import check_safe_name
from harness.overrides import RunOverrides, validation_problems
from harness.plan.model import PLAN_STATUSES, STATE_VERSION

NEW_PLAN_HINT = "`harness run` without --resume starts a new plan"
MAX_STATE_BYTES = 64 * 1024**2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _safe(what: str) -> AfterValidator:
    """A name that becomes a path: one safe component (``harness.names.check_safe_name``)."""
    return AfterValidator(lambda v: check_safe_name(v, what))


ModeName = Annotated[str, _safe("mode")]
RunId = Annotated[str, _safe("run id")]
PlanId = Annotated[str, _safe("plan id")]


class RunState(_Strict):
    """One (mode, seed) of a plan as state.json records it."""

    mode: ModeName = Field(..., description="Mode name (a folder under results/).")
    seed: Seed | None = Field(..., description="The seed, or null.")
    status: Literal[PLAN_STATUSES] = Field("pending", description="Where the run stands.")  # type: ignore[valid-type]
    run_id: RunId | None = Field(None, description="Folder of the current attempt under results/<mode>/.")
    attempts: StrictInt = Field(0, ge=0, description="How many times it was started.")
    started: Number | None = Field(None, description="Unix time the attempt started.")
    ended: Number | None = Field(None, description="Unix time it ended.")
    message: str = Field("", description="Why it ended so, in words.")
    wall_time: Number | None = Field(None, ge=0, description="Seconds it ran.")
    backend: str | None = Field(None, description="Backend that ran it.")
    node: str | None = Field(None, description="Host (or Ray node) that ran it.")
    gpus: list[str] = Field(default_factory=list, description="GPUs it was given.")
    cpuset: str | None = Field(None, description="CPUs it was pinned to (parallel plans).")
    previous_run_ids: list[RunId] = Field(default_factory=list, description="Folders of attempts cut short.")
    results_incomplete: str | None = Field(None, description="Why the run's results are missing or have holes.")


class FingerprintParts(_Strict):
    """What a run's fingerprint hashes (``harness.fingerprint``), kept so a difference can be named."""

    command: list[str] = Field(..., description="The mode's command, normalised.")
    code: dict[str, str] = Field(..., description="Relative path -> sha256 of the experiment's code.")
    config: dict[str, Any] = Field(..., description="The resolved experiment config that shapes a run.")
    settings: dict[str, Any] = Field(..., description="The resolved run settings.")
    runtime: dict[str, Any] = Field(..., description="Image id, or interpreter and framework versions.")


class FingerprintState(_Strict):
    """The fingerprint of a plan's first completed run of a mode (later runs must match it)."""

    hash: str = Field(..., pattern=r"^[0-9a-f]{8,128}$", description="sha256 of the parts.")
    version: StrictInt = Field(..., ge=1, description="Version of the fingerprint's format.")
    parts: FingerprintParts


class PlanState(_Strict):
    """The whole of state.json."""

    state_version: StrictInt = Field(..., ge=1, le=STATE_VERSION, description="Version of this file's format.")
    plan_id: PlanId = Field(..., description="The plan's folder name under results/plans/.")
    experiment: str = Field(..., description="Competition name.")
    experiment_dir: str = Field(..., description="Where the experiment was when the plan was made.")
    created: Number = Field(..., description="Unix time the plan was made.")
    modes: list[ModeName] = Field(..., min_length=1, description="Modes in the plan, in order.")
    seeds: list[Seed] = Field(..., description="Seeds in the plan, in order.")
    options: RunOverrides = Field(default_factory=RunOverrides, description="Flags the plan was made with.")
    runs: list[RunState] = Field(..., min_length=1, description="Every (mode, seed), interleaved.")
    parallel: StrictBool = Field(False, description="Runs one per free GPU / cpuset.")
    executor: Literal["local", "ray"] = Field("local", description="Where runs execute.")
    address: str | None = Field(None, description="Ray cluster address.")
    fail_fast: StrictBool = Field(False, description="Stop at the first failed run.")
    sequential: dict[str, Any] | None = Field(None, description="A sequential plan's design, looks, decision.")
    one_off_modes: dict[str, ModeSpec] = Field(default_factory=dict, description="`--mode NAME=CMD` modes.")
    fingerprints: dict[str, FingerprintState] = Field(default_factory=dict,
                                                      description="Mode -> its first completed run's fingerprint.")

    @field_validator("one_off_modes", "fingerprints")
    @classmethod
    def _one_off(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            check_safe_name(name, "mode")
        return v


def validate_state(raw: bytes, path: Path, known_modes: list[str]) -> dict[str, Any]:
    """Parse and check state.json's bytes; return its content as plain data.

    ``path`` is where it was read (its folder must be named by ``plan_id``); ``known_modes`` are
    the experiment's, which every mode in the plan must be one of.

    Raises:
        PlanStateError: naming the file and the first bad field, with a hint to start a new plan.
    """
    if len(raw) > MAX_STATE_BYTES:
        raise PlanStateError(f"{path}: is {len(raw)} bytes, too big to be a plan state", hint=NEW_PLAN_HINT)
    data = parse_json_file(raw, str(path), _StateJsonError)
    if not isinstance(data, dict):
        raise PlanStateError(f"{path}: must hold a JSON object, not {type(data).__name__}", hint=NEW_PLAN_HINT)
    version = data.get("state_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > STATE_VERSION:
        raise PlanStateError(f"{path}: state_version {version} is newer than this harness ({STATE_VERSION})",
                             hint="upgrade harness, or start a new plan with `harness run` without --resume")
    try:
        state = PlanState.model_validate(data)
    except ValidationError as e:
        raise PlanStateError(validation_problems(e, prefix=f"{path}: ")[0], hint=NEW_PLAN_HINT) from None
    problem = _cross_check(state, path, known_modes)
    if problem:
        raise PlanStateError(f"{path}: {problem}", hint=NEW_PLAN_HINT)
    return state.model_dump(mode="python")


def _cross_check(state: PlanState, path: Path, known_modes: list[str]) -> str | None:
    if state.plan_id != path.parent.name:
        return f"plan_id {state.plan_id!r} is not the name of its folder {path.parent.name!r}"
    known_modes = [*known_modes, *state.one_off_modes]
    for mode in state.modes:
        if mode not in known_modes:
            return f"modes: {mode!r} is not a mode of this experiment ({', '.join(known_modes)})"
    for mode in state.fingerprints:
        if mode not in state.modes:
            return f"fingerprints: {mode!r} is not one of the plan's modes ({', '.join(state.modes)})"
    for i, run in enumerate(state.runs):
        if run.mode not in state.modes:
            return f"runs.{i}.mode: {run.mode!r} is not one of the plan's modes ({', '.join(state.modes)})"
        if run.seed is not None and run.seed not in state.seeds:
            return f"runs.{i}.seed: {run.seed} is not one of the plan's seeds ({', '.join(map(str, state.seeds))})"
    return None


class _StateJsonError(PlanStateError):
    """state.json that is not usable JSON (the parse step's error, with the new-plan hint)."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or NEW_PLAN_HINT)
