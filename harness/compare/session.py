"""What ``harness compare`` does, as a library: compare, write the reports, render one format as text.

:func:`compare_and_report` does the work and returns a :class:`CompareResult`;
:func:`render_result` turns it into the text of one format (and the problem lines meant for
stderr). The CLI picks the format and prints; nothing here prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.compare.analysis import Comparison, compare_experiment, compare_many
from harness.errors import UsageError

FORMATS = ("table", "json", "markdown", "latex")


@dataclass
class CompareResult:
    """One experiment's comparison (``comparison`` and its report ``paths``), or several (``many``)."""

    comparison: Comparison | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    many: list[tuple[Path, Comparison | None, str | None]] | None = None

    @property
    def slower(self) -> bool:
        """Whether a candidate is significantly slower than its baseline (``--fail-if-slower``)."""
        if self.many is not None:
            return any(comp is not None and comp.is_slower for _, comp, _ in self.many)
        return self.comparison is not None and self.comparison.is_slower


def compare_and_report(*, experiments: list[Path], baseline: str = "baseline", candidate: str = "optimization",
                       run_ids: list[str] | None = None, noise_band: float = 0.02,
                       plots: bool = True) -> CompareResult:
    """Compare each experiment's two modes and write its ``results/comparison/``.

    Raises:
        UsageError: bad options; ExperimentNotFoundError: no experiment here; see compare_experiment.
    """
    from harness.compare.report import write_reports

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
        return CompareResult(many=items)
    comp = compare_experiment(Path(experiments[0]), baseline, candidate, run_ids, noise_band)
    return CompareResult(comparison=comp, paths=write_reports(comp, plots=plots))


def render_result(result: CompareResult, fmt: str, width: int) -> tuple[str, list[str]]:
    """``(text for stdout, lines for stderr)``: the format asked for, and the results files that were skipped.

    The table shows skipped files itself; the machine-readable formats keep stdout clean.

    Raises:
        UsageError: for an unknown format.
    """
    from harness.compare import tables
    from harness.compare.report import comparison_document

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if result.many is not None:
        items = result.many
        problems = [f"skipped: {p}" for _, comp, _ in items if comp is not None for p in comp.problems]
        if fmt == "json":
            return json.dumps([{"experiment": str(path), "error": error,
                                "comparison": comparison_document(comp)["comparison"] if comp else None}
                               for path, comp, error in items], indent=1), problems
        render = {"markdown": tables.render_summary_markdown, "latex": tables.render_summary_latex}.get(fmt)
        text = render(items) if render else tables.render_summary_table(items, width)
        return text.rstrip("\n"), problems
    comp = result.comparison
    assert comp is not None
    if fmt == "table":
        return f"{tables.render_table(comp, width).rstrip(chr(10))}\nReport: {result.paths['html']}", []
    problems = [f"skipped: {p}" for p in comp.problems]
    if fmt == "json":
        return result.paths["json"].read_text(encoding="utf-8").rstrip("\n"), problems
    text = tables.render_markdown(comp) if fmt == "markdown" else tables.render_latex(comp)
    return text.rstrip("\n"), problems
