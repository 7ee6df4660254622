"""The results schema: write atomically, load one run, list an experiment's runs.

Every reader of ``results.json`` goes through :func:`load_run`, so a file that is cut
short, malformed or newer than this harness is reported in one place, with its path.
Runs whose ``results.json`` never got written (the agent was SIGKILLed) are rebuilt
from ``events.jsonl``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.errors import ResultsError

SCHEMA_VERSION = 1
RESULTS_FILENAME = "results.json"
EVENTS_FILENAME = "events.jsonl"
STDOUT_FILENAME = "stdout.log"
STATUSES = ("completed", "failed", "interrupted", "oom_killed", "timeout", "running")
# Folders under results/ that are not modes.
RESERVED_DIRS = frozenset({"plans", "comparison"})


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see the old file or the whole new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _json_default(value: Any) -> Any:
    # numpy scalars and paths reach us from user code and aggregates.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class RunResult:
    """One run's ``results.json``, loaded and checked."""

    path: Path
    data: dict[str, Any]
    rebuilt: bool = False

    @property
    def run(self) -> dict[str, Any]:
        return self.data["run"]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def mode(self) -> str:
        return self.run["mode"]

    @property
    def seed(self) -> int | None:
        return self.run.get("seed")

    @property
    def status(self) -> str:
        return self.run["status"]

    @property
    def backend(self) -> str | None:
        return self.run.get("backend")

    @property
    def experiment_name(self) -> str:
        return self.data.get("experiment_name", "")

    @property
    def mode_data(self) -> dict[str, Any]:
        return self.data["modes"][self.mode]

    @property
    def summary(self) -> dict[str, Any]:
        return self.mode_data.get("summary", {})

    @property
    def environment(self) -> dict[str, Any]:
        return self.data.get("environment", {})


def validate_results(data: Any, path: Path) -> None:
    """Check the parts of a results document every reader relies on.

    Raises:
        ResultsError: naming the file and the first problem.
    """
    if not isinstance(data, dict):
        raise ResultsError(path, f"must hold a JSON object, not {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise ResultsError(path, "has no schema_version; it was not written by harness")
    if version > SCHEMA_VERSION:
        raise ResultsError(path, f"schema_version {version} is newer than this harness understands "
                                 f"({SCHEMA_VERSION})", hint="upgrade harness")
    run = data.get("run")
    if not isinstance(run, dict):
        raise ResultsError(path, "has no 'run' object")
    for key in ("run_id", "mode", "status"):
        if not isinstance(run.get(key), str):
            raise ResultsError(path, f"run.{key} is missing or not a string")
    if run["status"] not in STATUSES:
        raise ResultsError(path, f"run.status {run['status']!r} is not one of {', '.join(STATUSES)}")
    modes = data.get("modes")
    if not isinstance(modes, dict) or not isinstance(modes.get(run["mode"]), dict):
        raise ResultsError(path, f"modes.{run['mode']} is missing")
    mode = modes[run["mode"]]
    for key in ("batch_times",):
        if key in mode and not isinstance(mode[key], list):
            raise ResultsError(path, f"modes.{run['mode']}.{key} must be a list")


def load_results_file(path: Path) -> dict[str, Any]:
    """Read and check one results.json.

    Raises:
        ResultsError: when the file is missing, cut short, not JSON, or not a harness results file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ResultsError(path, "not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(path, f"cannot be read ({e.__class__.__name__})") from e
    if not text.strip():
        raise ResultsError(path, "is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        problem = "is cut short" if e.pos >= len(text.rstrip()) - 1 else "is not valid JSON"
        raise ResultsError(path, f"{problem} ({e.msg} at line {e.lineno})",
                           hint="delete the run folder, or run it again") from e
    validate_results(data, path)
    return data


def load_run(path: Path) -> RunResult:
    """Load a run from its folder (or its results.json); rebuild from events when results.json is absent.

    Raises:
        ResultsError: when neither a usable results.json nor events.jsonl exists.
    """
    path = Path(path)
    run_dir = path.parent if path.name == RESULTS_FILENAME else path
    results_path = run_dir / RESULTS_FILENAME
    if results_path.exists():
        return RunResult(path=run_dir, data=load_results_file(results_path))
    if (run_dir / EVENTS_FILENAME).exists():
        from harness.results_build import rebuild_from_events  # the aggregation lives with the agent's code

        data = rebuild_from_events(run_dir)
        validate_results(data, run_dir / EVENTS_FILENAME)
        return RunResult(path=run_dir, data=data, rebuilt=True)
    raise ResultsError(results_path, "not found (and no events.jsonl to rebuild it from)")


def rebuild_from_events(run_dir: Path) -> dict[str, Any]:
    """A run's results document rebuilt from its ``events.jsonl`` (nothing is written).

    Raises:
        ResultsError: when events.jsonl is missing or holds no record.
    """
    from harness.results_build import rebuild_from_events as rebuild

    return rebuild(Path(run_dir))


@dataclass
class RunScan:
    """What :func:`list_runs` found: the runs it could load, and the files it had to skip."""

    runs: list[RunResult] = field(default_factory=list)
    problems: list[ResultsError] = field(default_factory=list)


def iter_run_dirs(results_dir: Path, mode: str | None = None) -> Iterator[Path]:
    """Every ``results/<mode>/<run_id>/`` folder, oldest first."""
    if not results_dir.is_dir():
        return
    modes = [results_dir / mode] if mode else sorted(p for p in results_dir.iterdir()
                                                      if p.is_dir() and p.name not in RESERVED_DIRS)
    for mode_dir in modes:
        if not mode_dir.is_dir():
            continue
        for run_dir in sorted(mode_dir.iterdir()):
            if run_dir.is_dir() and not run_dir.name.startswith("."):
                yield run_dir


def list_runs(experiment_dir: Path, mode: str | None = None) -> RunScan:
    """Load every run of an experiment (or of one mode), skipping and reporting broken ones."""
    scan = RunScan()
    for run_dir in iter_run_dirs(Path(experiment_dir) / "results", mode):
        try:
            scan.runs.append(load_run(run_dir))
        except ResultsError as e:
            scan.problems.append(e)
    return scan
