"""Every mode against the baseline, one line each: what ``harness compare`` prints when the results
hold more than two modes and no pair was named (a sweep of flags: ``--batch_size 20/40/80``, ``--amp``).

Each line is a full comparison (:func:`~harness.compare.analysis.compare_experiment`) reduced to its
headline figures and verdicts; the caller then prints the full report of the first.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.compare.analysis import DEFAULT_NOISE_BAND, Comparison, compare_experiment
from harness.compare.tables import _console, _rich_table, comparison_row
from harness.errors import HarnessError

OVERVIEW_HEADERS = ["Mode", "Runs", "Throughput change", "95 % CI", "Verdict", "End-to-end change", "Verdict",
                    "Notes"]

ModeRow = tuple[str, "Comparison | None", "str | None"]


def modes_with_runs(experiment_dir: Path) -> list[str]:
    """Modes that have a run folder under ``results/``, in the config's order, then by name."""
    from harness.results import iter_run_dirs

    found = {run_dir.parent.name for run_dir in iter_run_dirs(Path(experiment_dir) / "results")}
    order: list[str] = []
    try:
        config = json.loads((Path(experiment_dir) / "experiment_config.json").read_text(encoding="utf-8"))
        order = [m for m in config.get("modes", {}) if isinstance(m, str)]
    except (OSError, ValueError, AttributeError):
        pass
    return [m for m in order if m in found] + sorted(found - set(order))


def compare_modes(experiment_dir: Path, baseline: str = "baseline", modes: list[str] | None = None,
                  noise_band: float = DEFAULT_NOISE_BAND) -> list[ModeRow]:
    """Each mode (other than ``baseline``) compared with ``baseline``; a mode that cannot be compared
    keeps its error message instead."""
    rows: list[ModeRow] = []
    for mode in modes if modes is not None else modes_with_runs(experiment_dir):
        if mode == baseline:
            continue
        try:
            rows.append((mode, compare_experiment(Path(experiment_dir), baseline, mode, None, noise_band), None))
        except HarnessError as e:
            rows.append((mode, None, str(e)))
    return rows


def overview_rows(items: list[ModeRow]) -> list[list[str]]:
    return [comparison_row(mode, comp, error or "") for mode, comp, error in items]


def render_overview(items: list[ModeRow], baseline: str, width: int | None = None) -> str:
    """The one-line-per-mode table (rich, as the other tables)."""
    console, buf = _console(width)
    console.print(_rich_table(f"Every mode against {baseline}", OVERVIEW_HEADERS, overview_rows(items),
                              numeric_from=1))
    return buf.getvalue()


def overview_text(items: list[ModeRow], baseline: str, fmt: str, width: int | None = None) -> str:
    """The overview in one of compare's formats (table, markdown, latex), ending in a blank line."""
    from harness.compare.tables import latex_table, md_table

    if fmt == "markdown":
        return f"## Every mode against {baseline}\n\n" + md_table(OVERVIEW_HEADERS, overview_rows(items)) + "\n"
    if fmt == "latex":
        return latex_table(OVERVIEW_HEADERS, overview_rows(items), f"Every mode against {baseline}",
                           "tab:overview") + "\n"
    return render_overview(items, baseline, width)


def overview_document(items: list[ModeRow]) -> list[dict[str, object]]:
    """The overview for comparison.json-style output: per mode, the headline metric's ratio and verdicts."""
    out: list[dict[str, object]] = []
    for mode, comp, error in items:
        if comp is None:
            out.append({"mode": mode, "error": error})
            continue
        thr, e2e = comp.metric("throughput") or comp.headline, comp.metric("total_time")
        out.append({"mode": mode, "runs": [len(comp.runs[comp.baseline]), len(comp.runs[comp.candidate])],
                    "metric": thr.spec.key if thr else None, "ratio": thr.ratio if thr else None,
                    "interval": [thr.test.low, thr.test.high] if thr and thr.test else None,
                    "verdict": thr.verdict if thr else None,
                    "end_to_end_ratio": e2e.ratio if e2e else None, "end_to_end_verdict": e2e.verdict if e2e else None})
    return out


def first_compared(items: list[ModeRow]) -> Comparison | None:
    """The comparison whose full report follows the table: the first mode that could be compared."""
    return next((comp for _, comp, _ in items if comp is not None), None)
