"""The contract between the two halves: results.json's version, file names, statuses, validation.

The run side (agent, backends, plan) writes these files and the compare side reads them; both
take the names and the rules from here, so a file name or a status is spelled in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ResultsError

SCHEMA_VERSION = 1
RESULTS_FILENAME = "results.json"
EVENTS_FILENAME = "events.jsonl"
STDOUT_FILENAME = "stdout.log"
STATUSES = ("completed", "failed", "interrupted", "oom_killed", "timeout", "running")
# Folders under results/ that are not modes.
RESERVED_DIRS = frozenset({"plans", "comparison"})


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
    from harness.run_numbers import check_run

    check_run(data, path)  # no reader, and no verdict, rests on an impossible number
