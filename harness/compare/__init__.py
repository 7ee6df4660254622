"""``harness compare``: honest verdicts on two modes' runs, with statistics, diagnosis and reports.

The core is :func:`compare_experiment` (→ :class:`Comparison`); ``session.compare_and_report``
is what the CLI calls (it compares and writes ``results/comparison/``), and
``session.render_result`` gives the text of one format, which the CLI prints.
"""

from __future__ import annotations

from harness.compare.analysis import (Comparison, MetricResult, RunData, compare_experiment, compare_many,
                                      compare_runs)
from harness.compare.session import CompareResult, compare_and_report, render_result

__all__ = ["CompareResult", "Comparison", "MetricResult", "RunData", "compare_and_report", "compare_experiment",
           "compare_many", "compare_runs", "render_result"]
