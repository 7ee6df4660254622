"""Render a Comparison as text: a rich terminal table, Markdown, LaTeX (seed 000's paper tables).

All three formats are built from the same rows, so they cannot disagree.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from harness.compare import stats

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison, RunData

VERDICT_HEADERS = ["Metric", "{baseline}", "{candidate}", "Change", "95 % CI", "p", "Verdict"]
DETAIL_HEADERS = ["Metric", "{baseline}", "{candidate}", "Ratio"]
RUN_HEADERS = ["Mode", "Run", "Seed", "Batches", "Warm-up", "Median step", "Throughput", "Outliers", "Spread"]
SUMMARY_HEADERS = ["Experiment", "Runs", "Throughput change", "95 % CI", "Verdict", "End-to-end change",
                   "Verdict (e2e)", "Notes"]


# ----------------------------------------------------------------------------- formatting


def _scale(value: float, unit: str) -> tuple[float, str]:
    """(factor, suffix) that shows ``value`` in a readable unit."""
    v = abs(value)
    if unit == "s":
        return (1000.0, " ms") if v < 1 else (1.0, " s")
    if unit == "bytes":
        for name, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
            if v >= factor:
                return 1.0 / factor, f" {name}"
        return 1.0, " B"
    return {"fraction": (100.0, " %"), "%": (1.0, " %"), "samples/s": (1.0, "/s"), "MB": (1.0, " MB")}.get(
        unit, (1.0, ""))


def _decimals(scaled: float, digits: int = 4) -> int:
    if scaled == 0 or not math.isfinite(scaled):
        return 2
    return max(0, min(6, digits - 1 - int(math.floor(math.log10(abs(scaled))))))


def fmt_value(value: float | None, unit: str, sd: float | None = None) -> str:
    """A number in its unit, short and readable (ms below 1 s, MB/GB for bytes); with ``sd``: mean ± sd.

    The sd is printed with the mean's decimals so the two read together.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    factor, suffix = _scale(value, unit)
    dec = 2 if unit == "cores" else _decimals(value * factor, 3 if unit in ("fraction", "%") else 4)
    text = f"{value * factor:.{dec}f}"
    if sd is not None and math.isfinite(sd):
        text += f" ± {sd * factor:.{dec}f}"
    return text + suffix


def _mean_sd(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return fmt_value(mean, unit)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return fmt_value(mean, unit, sd)


def fmt_change(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "-"
    return f"{(ratio - 1) * 100:+.1f} %"


def fmt_interval(low: float, high: float, kind: str = "across runs") -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    text = f"[{(low - 1) * 100:+.1f}, {(high - 1) * 100:+.1f}] %"
    return text + " within-run" if kind == "within run" else text


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ----------------------------------------------------------------------------- rows


def verdict_rows(comp: Comparison) -> list[list[str]]:
    rows = []
    for m in comp.speed:
        t = m.test
        rows.append([m.spec.label, _mean_sd(m.baseline, m.spec.unit), _mean_sd(m.candidate, m.spec.unit),
                     fmt_change(m.ratio), fmt_interval(t.low, t.high, m.interval_kind) if t else "-",
                     fmt_p(t.p_value) if t else "-", m.verdict or "-"])
    return rows


def detail_rows(comp: Comparison) -> list[list[str]]:
    rows = []
    for m in comp.descriptive:
        ratio = m.ratio
        rows.append([m.spec.label, _mean_sd(m.baseline, m.spec.unit), _mean_sd(m.candidate, m.spec.unit),
                     f"{ratio:.3f}" if ratio is not None and math.isfinite(ratio) else "-"])
    return rows


def run_rows(comp: Comparison) -> list[list[str]]:
    rows = []
    for mode in (comp.baseline, comp.candidate):
        for r in comp.runs[mode]:
            s = r.steps
            rows.append([mode, r.run_id, "-" if r.seed is None else str(r.seed),
                         str(s.n_batches) if s else "-",
                         f"{s.warmup_batches} ({s.warmup_cost_s:.2f} s)" if s else "-",
                         fmt_value(s.median_s, "s") if s else "-",
                         fmt_value(r.values.get("throughput"), "samples/s"),
                         f"{s.outliers}" if s else "-",
                         f"{s.spread * 100:.1f} %" if s else "-"])  # unstable runs are named in Warnings
    return rows


def header_lines(comp: Comparison) -> list[str]:
    def seeds(runs: list[RunData]) -> str:
        ss = [str(r.seed) for r in runs if r.seed is not None]
        return f" (seeds {', '.join(ss)})" if ss else ""

    b, c = comp.baseline, comp.candidate
    method = "paired by seed (runs interleaved)" if comp.paired else "Welch's t across runs"
    lines = [f"{comp.experiment_name}: {c} against {b}",
             f"{b}: {len(comp.runs[b])} run(s){seeds(comp.runs[b])}; {c}: {len(comp.runs[c])} run(s)"
             f"{seeds(comp.runs[c])}; test: {method} on log per-run statistics; noise band "
             f"±{comp.noise_band * 100:g} %"]
    return lines


def headline_sentence(comp: Comparison) -> str:
    """The verdict in one line; compare/headline.py decides what it leads with and whether both figures show."""
    from harness.compare.headline import WORDS, both_figures, disagree, speed_of, times, within_noise_sentence

    h = comp.headline
    if h is None or h.test is None:
        return "No speed metric could be compared (no batch times and no total time)."
    s, _, _ = speed_of(h)
    what = h.spec.label.lower()
    detail = f"{what} {fmt_change(h.ratio)}, 95 % CI {fmt_interval(h.test.low, h.test.high, h.interval_kind)}"
    both = both_figures(comp) if disagree(comp) else None
    lead = WORDS.get(h.spec.key, what)
    if h.verdict in (stats.FASTER, stats.SLOWER):
        if both:
            return f"{comp.candidate} is {h.verdict}: {times(s)} {lead} ({both}); {detail}."
        return f"{comp.candidate} is {h.verdict}: {times(s)} ({detail})."
    if h.verdict == stats.WITHIN_NOISE:
        sentence = within_noise_sentence(comp, h)
        return sentence[:-1] + f" ({both})." if both else sentence
    if h.verdict == stats.INCONCLUSIVE:
        return (f"INCONCLUSIVE: too few runs for an across-run test ({what} {fmt_change(h.ratio)}, "
                f"interval {fmt_interval(h.test.low, h.test.high, h.interval_kind)}).")
    if both:
        return f"No significant difference {lead} ({both}); {detail}."
    return f"No significant difference ({detail})."


def headline_lines(comp: Comparison) -> list[str]:
    """The headline, and under it "but accuracy is lower: ..." when the candidate learns worse."""
    line = comp.quality_line
    return [headline_sentence(comp)] + ([line] if line else [])


def notes(comp: Comparison) -> list[tuple[str, list[str]]]:
    """The word sections in print order: (title, lines)."""
    left = [f"{mode} run {rid}: {status} ({path})" for rid, mode, status, path in comp.left_out]
    return [("Quality", comp.quality_flags), ("Diagnosis", comp.diagnosis), ("Fairness", comp.fairness),
            ("Warnings", comp.warnings), ("Left out (older code)", comp.left_out_older),
            ("Left out (not completed)", left), ("Skipped (unreadable results)", comp.problems)]


def _headers(headers: list[str], comp: Comparison) -> list[str]:
    return [h.format(baseline=comp.baseline, candidate=comp.candidate) for h in headers]


# ----------------------------------------------------------------------------- rich


def _console(width: int | None) -> tuple["object", io.StringIO]:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width or 120, no_color=True, force_terminal=False, highlight=False,
                      emoji=False, soft_wrap=False)
    return console, buf


def _rich_table(title: str | None, headers: list[str], rows: list[list[str]], numeric_from: int = 1):
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for i, h in enumerate(headers):
        table.add_column(h, justify="right" if 0 < i and i >= numeric_from else "left",
                         overflow="fold", no_wrap=h in ("Run", "Mode"))
    for row in rows:
        table.add_row(*row)
    return table


def render_table(comp: Comparison, width: int | None = None) -> str:
    """The terminal view: verdicts, details, runs, then the diagnosis in words."""
    console, buf = _console(width)
    for line in header_lines(comp):
        console.print(line)
    for line in headline_lines(comp):
        console.print(line)
    console.print(_rich_table("Verdicts", _headers(VERDICT_HEADERS, comp), verdict_rows(comp)))
    console.print(_rich_table("Details (mean ± sd across runs)", _headers(DETAIL_HEADERS, comp), detail_rows(comp)))
    console.print(_rich_table("Runs", RUN_HEADERS, run_rows(comp), numeric_from=2))
    text = buf.getvalue()
    # The words go out unwrapped: paths and sentences stay whole for copying and for grep.
    for title, lines in notes(comp):
        if lines:
            text += f"{title}:\n" + "".join(f"  - {line}\n" for line in lines)
    return text


def render_summary_table(items: list[tuple[Path, Comparison | None, str | None]], width: int | None = None) -> str:
    """One row per experiment (seed 002's cross-domain comparison)."""
    console, buf = _console(width)
    console.print(_rich_table("Across experiments", SUMMARY_HEADERS, summary_rows(items), numeric_from=2))
    errors = [f"  - {path}: {error}\n" for path, comp, error in items if comp is None]
    return buf.getvalue() + ("Not compared:\n" + "".join(errors) if errors else "")


def comparison_row(label: str, comp: Comparison | None, error: str) -> list[str]:
    """One line of a comparison summary: runs, throughput change and interval, verdicts, notes.

    Shared by the across-experiments table and the every-mode overview, so both read alike.
    """
    if comp is None:
        return [label, "-", "-", "-", "error", "-", "-", error]
    thr, e2e = comp.metric("throughput") or comp.headline, comp.metric("total_time")
    notes = (["learns worse"] if comp.quality_flags else []) \
        + ([f"{len(comp.fairness)} fairness warning(s)"] if comp.fairness else [])
    return [
        label,
        f"{len(comp.runs[comp.baseline])}/{len(comp.runs[comp.candidate])}",
        fmt_change(thr.ratio) if thr else "-",
        fmt_interval(thr.test.low, thr.test.high, thr.interval_kind) if thr and thr.test else "-",
        thr.verdict if thr and thr.verdict else "-",
        fmt_change(e2e.ratio) if e2e else "-",
        e2e.verdict if e2e and e2e.verdict else "-",
        "; ".join(notes)]


def summary_rows(items: list[tuple[Path, Comparison | None, str | None]]) -> list[list[str]]:
    return [comparison_row(comp.experiment_name if comp is not None else path.name, comp,
                           "not compared (see below)") for path, comp, _ in items]


# ----------------------------------------------------------------------------- markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(comp: Comparison, images: dict[str, str] | None = None) -> str:
    """The Markdown report: the same tables and words; ``images`` maps section titles to PNG names."""
    out = [f"# Comparison: {comp.experiment_name}", ""]
    out += [f"{line}  " for line in header_lines(comp)[1:]]
    out += [""] + [f"**{line}**  " for line in headline_lines(comp)]
    out[-1] = out[-1].rstrip()
    out += ["", "## Verdicts", "",
            md_table(_headers(VERDICT_HEADERS, comp), verdict_rows(comp)),
            "## Details (mean ± sd across runs)", "", md_table(_headers(DETAIL_HEADERS, comp), detail_rows(comp)),
            "## Runs", "", md_table(RUN_HEADERS, run_rows(comp))]
    for title, lines in notes(comp):
        if lines:
            out += [f"## {title}", ""] + [f"- {_md_escape(line)}" for line in lines] + [""]
    if images:
        out += ["## Plots", ""]
        for title, name in images.items():
            out += [f"### {title}", "", f"![{title}]({name})", ""]
    return "\n".join(out)


def render_summary_markdown(items: list[tuple[Path, Comparison | None, str | None]]) -> str:
    return "# Across experiments\n\n" + md_table(SUMMARY_HEADERS, summary_rows(items))


# ----------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "<": r"\textless{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(headers: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    """A booktabs table in the shape pandas' ``to_latex(caption=...)`` gives (seed 000)."""
    spec = "l" + "r" * (len(headers) - 2) + "l"
    lines = [r"\begin{table}", r"\centering", rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_latex(comp: Comparison) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in comp.experiment_name)
    n = f"{len(comp.runs[comp.baseline])} and {len(comp.runs[comp.candidate])} runs"
    caption = (f"{comp.experiment_name}: {comp.candidate} against {comp.baseline} ({n}; mean ± sd across runs; "
               f"95 % CI of the ratio; noise band ±{comp.noise_band * 100:g} %)")
    return latex_table(_headers(VERDICT_HEADERS, comp), verdict_rows(comp), caption, f"tab:harness-{slug}")


def render_summary_latex(items: list[tuple[Path, Comparison | None, str | None]]) -> str:
    return latex_table(SUMMARY_HEADERS, summary_rows(items), "Candidate against baseline across experiments",
                       "tab:harness-summary")
