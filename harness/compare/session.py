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
from harness.compare.overview import (ModeRow, compare_modes, first_compared, modes_with_runs, overview_document,
                                      overview_text)
from harness.errors import ExperimentNotFoundError, UsageError

FORMATS = ("table", "json", "markdown", "latex")


@dataclass
class CompareResult:
    """One experiment's comparison (``comparison`` and its report ``paths``), or several (``many``)."""

    comparison: Comparison | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    many: list[tuple[Path, Comparison | None, str | None]] | None = None
    overview: list[ModeRow] | None = None  # every mode against the baseline; `comparison` is the first

    @property
    def slower(self) -> bool:
        """Whether a candidate is significantly slower than its baseline (``--fail-if-slower``)."""
        return any(comp.is_slower for comp in self._comparisons())

    @property
    def worse(self) -> bool:
        """Whether a candidate learns worse beyond the run-to-run spread (``--fail-if-worse``)."""
        return any(comp.is_worse for comp in self._comparisons())

    def _comparisons(self) -> list[Comparison]:
        if self.many is not None:
            return [comp for _, comp, _ in self.many if comp is not None]
        if self.overview is not None:
            return [comp for _, comp, _ in self.overview if comp is not None]
        return [self.comparison] if self.comparison is not None else []


def split_targets(targets: list[str]) -> tuple[list[Path], list[str]]:
    """``harness compare``'s positional words: existing folders are experiments, names are modes.

    Raises:
        ExperimentNotFoundError: for a path (a word with a slash) that is not a folder.
        UsageError: for more than two modes, or a word that is neither.
    """
    from harness.modes import MODE_NAME

    experiments: list[Path] = []
    modes: list[str] = []
    for word in targets:
        path = Path(word)
        if path.is_dir():
            experiments.append(path)
        elif "/" not in word and MODE_NAME.fullmatch(word):
            modes.append(word)
        else:
            raise ExperimentNotFoundError(f"{word} is not a folder (nor a mode name)",
                                          hint="give experiment folders, or two modes: harness compare A B")
    if len(modes) > 2:
        raise UsageError(f"compare takes two modes, BASELINE CANDIDATE (got {len(modes)}: {' '.join(modes)})")
    return experiments, modes


def pick_pair(modes: list[str], baseline: str | None, candidate: str | None) -> tuple[str | None, str | None]:
    """The pair from positional modes and the flags (``A B`` = ``--baseline A --candidate B``; ``B`` alone
    is the candidate).

    Raises:
        UsageError: when positional modes and the flags both name a mode.
    """
    if len(modes) == 2:
        if baseline or candidate:
            raise UsageError("give the modes either as BASELINE CANDIDATE or with --baseline/--candidate")
        return modes[0], modes[1]
    if len(modes) == 1:
        if candidate:
            raise UsageError(f"{modes[0]} and --candidate {candidate} both name the candidate; give one")
        return baseline, modes[0]
    return baseline, candidate


def compare_and_report(*, experiments: list[Path], baseline: str | None = None, candidate: str | None = None,
                       run_ids: list[str] | None = None, noise_band: float = 0.02,
                       plots: bool = True, modes: list[str] | None = None,
                       all_runs: bool = False) -> CompareResult:
    """Compare each experiment's two modes and write its ``results/comparison/``.

    ``modes`` are positional mode names (``harness compare A B``). With one experiment, no mode
    named either way and results of more than two modes, every mode is compared with the baseline
    (``overview``) and the first one's report is written.
    ``all_runs`` pools every completed run of a mode instead of its newest fingerprint's.

    Raises:
        UsageError: bad options; ExperimentNotFoundError: no experiment here; see compare_experiment.
    """
    from harness.compare.report import write_reports

    if not experiments:
        from harness.experiment import find_experiment

        experiments = [find_experiment(None).path]
    named = bool(modes or baseline or candidate)
    baseline, candidate = pick_pair(list(modes or []), baseline, candidate)
    baseline, candidate = baseline or "baseline", candidate or "optimization"
    if len(experiments) == 1 and not named and not run_ids:
        result = _overview(Path(experiments[0]), baseline, noise_band, plots)
        if result is not None:
            return result
    if len(experiments) > 1:
        if run_ids:
            raise UsageError("--runs picks runs of one experiment; give a single experiment with it")
        items = compare_many(experiments, baseline, candidate, noise_band, all_runs=all_runs)
        for _, comp, _ in items:
            if comp is not None:
                write_reports(comp, plots=plots)
        return CompareResult(many=items)
    comp = compare_experiment(Path(experiments[0]), baseline, candidate, run_ids, noise_band, all_runs=all_runs)
    return CompareResult(comparison=comp, paths=write_reports(comp, plots=plots))


def _overview(experiment_dir: Path, baseline: str, noise_band: float, plots: bool) -> CompareResult | None:
    """Every mode against ``baseline`` when the results hold more than two modes (else ``None``).

    Raises:
        UsageError: when no mode could be compared with the baseline (the first reason).
    """
    from harness.compare.report import write_reports

    found = modes_with_runs(experiment_dir)
    if len(found) <= 2 or baseline not in found:
        return None
    items = compare_modes(experiment_dir, baseline, found, noise_band)
    first = first_compared(items)
    if first is None:
        raise UsageError(f"no mode could be compared with {baseline}: {items[0][2]}")
    return CompareResult(comparison=first, paths=write_reports(first, plots=plots), overview=items)


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
    head = overview_text(result.overview, comp.baseline, fmt, width) if result.overview is not None else ""
    if fmt == "table":
        return f"{head}{tables.render_table(comp, width).rstrip(chr(10))}\nReport: {result.paths['html']}", []
    problems = [f"skipped: {p}" for p in comp.problems]
    if fmt == "json":
        text = result.paths["json"].read_text(encoding="utf-8").rstrip("\n")
        if result.overview is None:
            return text, problems
        doc = json.loads(text)
        doc["overview"] = overview_document(result.overview)
        return json.dumps(doc, indent=1), problems
    text = tables.render_markdown(comp) if fmt == "markdown" else tables.render_latex(comp)
    return head + text.rstrip("\n"), problems
