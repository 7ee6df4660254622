"""Write a Comparison to ``results/comparison/``: comparison.json, report.md, report.html, PNGs.

comparison.json keeps seed 004's shape (``experiment_name``, ``timestamp``, ``datetime``,
``modes.<mode>.{config, batch_times, resource_usage, metrics, summary}``) so tools written for the
seed read it; several runs per mode are summarised, the per-batch fields show the mode's
representative (median) run, every run is listed under ``runs``, and the statistics are in an
added ``comparison`` block. The HTML embeds its PNGs as data URIs so it can be mailed as one file.
"""

from __future__ import annotations

import base64
import json
import os
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compare import tables
from harness.results.io import write_atomic

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison, RunData

COMPARISON_SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, numpy scalars plain numbers, tuples lists, paths strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _rows(arr: np.ndarray) -> list[list[Any]]:
    """Rows of a float array as JSON-ready lists (NaN -> null); the fast path is one ``tolist``."""
    if arr.size and np.isnan(arr).any():
        return [[None if isinstance(v, float) and v != v else v for v in row] for row in arr.tolist()]
    return arr.tolist()


def _pairs(index: np.ndarray, values: np.ndarray) -> list[list[Any]]:
    return [[i, v] for i, v in zip(index.astype(np.int64).tolist(), values.tolist())]


def _mode_summary(comp: Comparison, mode: str) -> dict[str, Any]:
    runs = comp.runs[mode]
    dts = np.concatenate([r.batch_dt for r in runs]) if runs else np.empty(0)

    def mean(key: str) -> float | None:
        vals = [r.values.get(key) for r in runs if r.values.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    def mean_of(section: str, key: str) -> float | None:
        vals = [r.summary.get(section, {}).get(key) for r in runs if isinstance(r.summary.get(section), dict)]
        vals = [v for v in vals if isinstance(v, (int, float))]
        return float(np.mean(vals)) if vals else None

    summary: dict[str, Any] = {
        "runs": len(runs),
        "total_time": mean("total_time"),
        "num_batches": float(np.mean([r.batch_dt.size for r in runs])) if runs else None,
        "throughput": mean("throughput"),
        "data_wait_fraction": mean("data_wait_fraction"),
        "warmup_batches": mean("warmup_batches"),
        "warmup_cost": mean("warmup_cost"),
        "loss": {"initial": mean_of("loss", "initial"), "final": mean("loss_final"), "min": mean("loss_best"),
                 "max": mean_of("loss", "max")},
        "accuracy": {"initial": mean_of("accuracy", "initial"), "final": mean("acc_final"),
                     "best": mean("acc_best")},
        "cpu": {"mean_cores": mean("cpu_cores"), "mean_percent_of_limit": mean("cpu_percent"),
                "throttled_fraction": mean("cpu_throttled")},
        "memory": {"peak_bytes": mean("mem_peak"), "mean_bytes": mean("mem_mean")},
        "gpu": {"mean_util": mean("gpu_util"), "peak_memory_mb": mean("gpu_mem_peak")},
    }
    if dts.size:
        summary["batch_time"] = {"mean": float(dts.mean()), "std": float(dts.std()), "min": float(dts.min()),
                                 "max": float(dts.max()), "median": float(np.median(dts)),
                                 "p95": float(np.percentile(dts, 95))}
    return summary


def _run_entry(r: RunData) -> dict[str, Any]:
    return {"run_id": r.run_id, "seed": r.seed, "path": str(r.path), "started_at": r.started_at,
            "backend": r.backend, "image": r.image, "values": r.values,
            "steps": r.steps.to_dict() if r.steps else None, "unstable": r.unstable, "rebuilt": r.rebuilt}


def comparison_document(comp: Comparison) -> dict[str, Any]:
    """The comparison.json document (seed 004's format plus ``runs`` and a ``comparison`` block)."""
    modes: dict[str, Any] = {}
    big: dict[str, dict[str, Any]] = {}
    for mode in (comp.baseline, comp.candidate):
        rep = comp.representative(mode)
        entry: dict[str, Any] = {"config": rep.config if rep else {}, "representative_run": rep.run_id if rep else None}
        if rep is not None:
            entry["resource_usage"] = rep.resource_usage
            entry["metrics"] = {"custom": rep.custom_metrics}
            # Per-batch lists are already finite or NaN-mapped: kept out of the recursive clean-up,
            # which would otherwise visit a million small lists one by one.
            big[mode] = {"batch_times": _pairs(rep.batch_index, rep.batch_dt),
                         "losses": _rows(rep.losses), "accuracies": _rows(rep.accuracies)}
        entry["summary"] = _mode_summary(comp, mode)
        entry["runs"] = [_run_entry(r) for r in comp.runs[mode]]
        modes[mode] = entry
    h = comp.headline
    block = {
        "baseline": comp.baseline, "candidate": comp.candidate, "noise_band": comp.noise_band,
        "paired": comp.paired, "method": "paired t on per-seed log ratios" if comp.paired else
        "Welch's t on log per-run statistics",
        "verdict": h.verdict if h else None, "headline_metric": h.spec.key if h else None,
        "headline": tables.headline_sentence(comp), "quality_line": comp.quality_line,
        "primary_metric": comp.primary_metric, "all_runs": comp.all_runs,
        "metrics": {m.spec.key: m.to_dict() for m in comp.speed + comp.descriptive},
        "diagnosis": comp.diagnosis, "quality_flags": comp.quality_flags, "fairness": comp.fairness,
        "warnings": comp.warnings, "outlier_runs": comp.outlier_runs,
        "left_out": [{"run_id": rid, "mode": mode, "status": status, "path": str(path)}
                     for rid, mode, status, path in comp.left_out],
        "left_out_older": comp.left_out_older,
        "problems": comp.problems,
    }
    doc = _clean({
        "schema_version": COMPARISON_SCHEMA_VERSION,
        "experiment_name": comp.experiment_name,
        "timestamp": int(comp.created_at),
        "datetime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(comp.created_at)),
        "modes": modes,
        "comparison": block,
    })
    for mode, lists in big.items():
        entry = doc["modes"][mode]
        entry["batch_times"] = lists["batch_times"]
        entry["metrics"]["losses"] = lists["losses"]
        entry["metrics"]["accuracies"] = lists["accuracies"]
    return doc


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Comparison: {{ name }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.headline { font-size: 1.2em; font-weight: bold; padding: 0.6em; background: #f3f3f3; }
img { max-width: 100%; }
</style></head><body>
<h1>Comparison: {{ name }}</h1>
{% for line in header %}<p>{{ line }}</p>{% endfor %}
<section id="summary"><h2>Summary</h2>{% for line in headline %}<p class="headline">{{ line }}</p>{% endfor %}</section>
{% for sid, title, headers, rows in tables %}
<section id="{{ sid }}"><h2>{{ title }}</h2>
<table><thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
</section>
{% endfor %}
{% for sid, title, lines in notes %}
<section id="{{ sid }}"><h2>{{ title }}</h2>
{% if lines %}<ul>{% for line in lines %}<li>{{ line }}</li>{% endfor %}</ul>{% else %}<p>None.</p>{% endif %}
</section>
{% endfor %}
<section id="plots"><h2>Plots</h2>
{% for title, uri in images %}<h3>{{ title }}</h3><img alt="{{ title }}" src="{{ uri }}">
{% endfor %}{% for title, why in missing %}<h3>{{ title }}</h3><p>Not drawn: {{ why }}</p>
{% endfor %}</section>
</body></html>
"""

HTML_SECTIONS = ("summary", "verdicts", "details", "runs", "quality", "diagnosis", "fairness", "warnings",
                 "older-code", "left-out", "skipped", "plots")


def render_html(comp: Comparison, out_dir: Path, images: dict[str, str], plots_requested: bool) -> str:
    """The self-contained HTML report (every section present, even when empty)."""
    import jinja2

    from harness.compare.plots import PLOT_FILES

    embedded = []
    for title, name in images.items():
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        embedded.append((title, f"data:image/png;base64,{data}"))
    missing = []
    for title in PLOT_FILES:
        if title not in images:
            missing.append((title, "plots were skipped (--no-plots)" if not plots_requested else
                            "the runs recorded no data for it"))
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    note_ids = ("quality", "diagnosis", "fairness", "warnings", "older-code", "left-out", "skipped")
    return env.from_string(_HTML).render(
        name=comp.experiment_name, header=tables.header_lines(comp)[1:], headline=tables.headline_lines(comp),
        tables=[("verdicts", "Verdicts", tables._headers(tables.VERDICT_HEADERS, comp), tables.verdict_rows(comp)),
                ("details", "Details (mean ± sd across runs)", tables._headers(tables.DETAIL_HEADERS, comp),
                 tables.detail_rows(comp)),
                ("runs", "Runs", tables.RUN_HEADERS, tables.run_rows(comp))],
        notes=[(sid, title, lines) for sid, (title, lines) in zip(note_ids, tables.notes(comp))],
        images=embedded, missing=missing)


def write_reports(comp: Comparison, out_dir: Path | None = None, *, plots: bool = True) -> dict[str, Path]:
    """Write comparison.json, report.md, report.html (and PNGs unless ``plots`` is False).

    Each file is written whole (temp file + rename) so an interrupted compare leaves the previous
    report, never half of a new one.
    """
    out_dir = out_dir or comp.experiment_dir / "results" / "comparison"
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    if plots:
        from harness.compare.plots import make_plots

        images = make_plots(comp, out_dir)
    paths = {"json": out_dir / "comparison.json", "markdown": out_dir / "report.md",
             "html": out_dir / "report.html"}
    # Compact JSON: with ``indent`` the json module falls back to its pure-Python encoder, ~10x slower
    # on the per-batch lists of long runs.
    write_atomic(paths["json"], json.dumps(comparison_document(comp), separators=(",", ":"),
                                                 allow_nan=False) + "\n")
    write_atomic(paths["markdown"], tables.render_markdown(comp, images))
    write_atomic(paths["html"], render_html(comp, out_dir, images, plots))
    for name in images.values():
        paths[name] = out_dir / name
    return paths
