"""Loading runs: one run from its folder, or every run of an experiment.

Every reader of ``results.json`` goes through :func:`load_run`, so a file that is cut
short, malformed or newer than this harness is reported in one place, with its path.
Runs whose ``results.json`` never got written (the agent was SIGKILLed) are rebuilt
from ``events.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.errors import ResultsError
from harness.results.build import rebuild_from_events
from harness.results.io import load_results_file
from harness.results.schema import EVENTS_FILENAME, RESERVED_DIRS, RESULTS_FILENAME, validate_results


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
        data = rebuild_from_events(run_dir)
        validate_results(data, run_dir / EVENTS_FILENAME)
        return RunResult(path=run_dir, data=data, rebuilt=True)
    raise ResultsError(results_path, "not found (and no events.jsonl to rebuild it from)")


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
