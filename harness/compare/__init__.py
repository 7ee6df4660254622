"""``harness compare``: honest verdicts on two modes' runs, with statistics, diagnosis and reports.

The core is :func:`compare_experiment` (→ :class:`Comparison`); :func:`compare_command` is the thin
adapter the CLI calls: it compares, writes ``results/comparison/`` and prints one format.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from harness.compare.analysis import (Comparison, MetricResult, RunData, compare_experiment, compare_many,
                                      compare_runs)
from harness.errors import UsageError

__all__ = ["Comparison", "MetricResult", "RunData", "compare_command", "compare_experiment", "compare_many",
           "compare_runs"]

FORMATS = ("table", "json", "markdown", "latex")


def _width() -> int:
    # Wide enough for the verdict table; CliRunner and pipes fall back to COLUMNS or 120.
    return max(100, shutil.get_terminal_size((120, 24)).columns)


def compare_command(*, experiments: list[Path], baseline: str = "baseline", candidate: str = "optimization",
                    run_ids: list[str] | None = None, fmt: str = "table", noise_band: float = 0.02,
                    fail_if_slower: bool = False, plots: bool = True,
                    echo: Callable[..., Any] = print) -> int:
    """Compare, write the report files, print ``fmt``; return the exit code (1: slower and asked to fail).

    Raises:
        UsageError: bad options; ExperimentNotFoundError: no experiment here; see compare_experiment.
    """
    from harness.compare import tables
    from harness.compare.report import comparison_document, write_reports

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if not experiments:
        from harness.experiment import find_experiment

        experiments = [find_experiment(None).path]
    if len(experiments) > 1:
        if run_ids:
            raise UsageError("--runs picks runs of one experiment; give a single experiment with it")
        items = compare_many(experiments, baseline, candidate, noise_band)
        for _, comp, _ in items:
            if comp is not None:
                write_reports(comp, plots=plots)
                _print_problems(comp, echo)
        if fmt == "json":
            echo(json.dumps([{"experiment": str(path), "error": error,
                              "comparison": comparison_document(comp)["comparison"] if comp else None}
                             for path, comp, error in items], indent=1))
        elif fmt == "markdown":
            echo((tables.render_summary_markdown(items)).rstrip("\n"))
        elif fmt == "latex":
            echo((tables.render_summary_latex(items)).rstrip("\n"))
        else:
            echo((tables.render_summary_table(items, _width())).rstrip("\n"))
        slower = any(comp is not None and comp.is_slower for _, comp, _ in items)
        return 1 if fail_if_slower and slower else 0

    comp = compare_experiment(Path(experiments[0]), baseline, candidate, run_ids, noise_band)
    paths = write_reports(comp, plots=plots)
    if fmt == "table":
        echo((tables.render_table(comp, _width())).rstrip("\n"))
        echo(f"Report: {paths['html']}")
    else:
        _print_problems(comp, echo)
        if fmt == "json":
            echo((paths["json"].read_text(encoding="utf-8")).rstrip("\n"))
        elif fmt == "markdown":
            echo((tables.render_markdown(comp)).rstrip("\n"))
        else:
            echo((tables.render_latex(comp)).rstrip("\n"))
    return 1 if fail_if_slower and comp.is_slower else 0


def _print_problems(comp: Comparison, echo: Callable[..., Any]) -> None:
    """Unreadable results files, one line each on stderr, so a machine-readable stdout stays clean."""
    for problem in comp.problems:
        _echo_err(echo, f"skipped: {problem}")


def _echo_err(echo: Callable[..., Any], line: str) -> None:
    try:
        echo(line, err=True)
    except TypeError:  # plain print
        import sys

        print(line, file=sys.stderr)
