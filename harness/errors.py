"""Our exception types: the CLI turns each into a one-line ``Error:`` and an exit code.

Library code raises these (converting third-party exceptions where they enter our
code with ``raise ... from e``); anything else reaching the CLI is a bug and keeps
its traceback.
"""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class. ``exit_code`` 2 means bad input, 1 a failure; ``hint`` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(HarnessError):
    """Raised when a command is given a bad value (a bad name, an unknown mode, a bad size)."""

    exit_code = 2


class ConfigError(HarnessError):
    """Raised when ``experiment_config.json`` is missing, not JSON, or fails validation.

    ``problems`` lists ``field.path: message`` strings, one per bad field.
    """

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class ScaffoldError(HarnessError):
    """Raised when an experiment folder cannot be created (it exists, or writing failed)."""

    exit_code = 2


class ExperimentNotFoundError(HarnessError):
    """Raised when a command that acts on an experiment runs outside any experiment folder."""

    exit_code = 2


class EngineUnavailableError(HarnessError):
    """Raised when the Docker engine cannot be reached."""


class GpuRuntimeError(HarnessError):
    """Raised when GPUs are asked for but the engine has no NVIDIA runtime or CDI."""


class ImageBuildError(HarnessError):
    """Raised when an image build fails; ``log_tail`` holds the last lines of the build log."""

    def __init__(self, message: str, *, log_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


class ContainerRunError(HarnessError):
    """Raised when a run cannot be started or supervised (not when the training script fails)."""

    def __init__(self, message: str, *, exit_status: int | None = None, stderr_tail: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail


class ResultsError(HarnessError):
    """Raised when a results file is missing, cut short, malformed, or of a newer schema."""

    def __init__(self, path: Path | str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {problem}", hint=hint)
        self.path = Path(path)
        self.problem = problem


class PlanError(HarnessError):
    """Raised when a plan cannot be made, found or resumed."""


class PlanStateError(PlanError):
    """Raised when a plan's state.json does not validate, or a plan that is not there is named (bad input)."""

    exit_code = 2


class OptimizerError(HarnessError):
    """Raised when a PipelineOptimizer is misused (applied twice, a patch target missing) or cannot restore."""


class MissingDependencyError(HarnessError):
    """Raised when an optional dependency (ray, tensorflow, torch) is needed but not installed."""

    exit_code = 2


class PlanRunningError(PlanError):
    """Raised when ``harness run`` would start a plan while another plan of the experiment is running."""

    exit_code = 2

    def __init__(self, message: str, *, plan_id: str, pid: int | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.plan_id = plan_id
        self.pid = pid
