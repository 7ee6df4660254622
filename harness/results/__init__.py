"""The contract between the run side and the compare side: what a run leaves on disk.

``schema`` (version, file names, statuses, validation), ``events`` (the events.jsonl format),
``build`` (events -> results.json), ``io`` (the one atomic writer, ``update_run``) and ``load``
(one run, every run). The names most callers need are importable from here. Nothing in this
package imports anything host-side: it runs inside the containers.
"""

from __future__ import annotations

from harness.results.build import build_results, rebuild_from_events
from harness.results.io import load_results_file, update_run, write_atomic, write_json_atomic, write_results
from harness.results.load import RunResult, RunScan, iter_run_dirs, list_runs, load_run
from harness.results.schema import (EVENTS_FILENAME, RESERVED_DIRS, RESULTS_FILENAME, SCHEMA_VERSION, STATUSES,
                                    STDOUT_FILENAME, validate_results)

__all__ = ["EVENTS_FILENAME", "RESERVED_DIRS", "RESULTS_FILENAME", "SCHEMA_VERSION", "STATUSES", "STDOUT_FILENAME",
           "RunResult", "RunScan", "build_results", "iter_run_dirs", "list_runs", "load_results_file", "load_run",
           "rebuild_from_events", "update_run", "validate_results", "write_atomic", "write_json_atomic",
           "write_results"]
