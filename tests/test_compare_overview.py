"""Every mode against the baseline (issue #11): the library on synthetic results files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fixtures.results.synth import write_experiment
from harness.compare import stats
from harness.compare.overview import compare_modes, first_compared, modes_with_runs, render_overview


def sweep(tmp_path: Path) -> Path:
    """A flag sweep: bs40 clearly faster, bs80 faster still, amp the same as baseline."""
    modes = {"baseline": {"step": 0.050}, "bs40": {"step": 0.040}, "bs80": {"step": 0.030},
             "amp": {"step": 0.050}}
    return write_experiment(tmp_path / "sweep", modes={m: {**kw, "n_batches": 120} for m, kw in modes.items()},
                            seeds=[0, 1, 2, 3])


def test_modes_in_config_order_and_each_against_baseline(tmp_path: Path) -> None:
    exp = sweep(tmp_path)
    assert modes_with_runs(exp) == ["baseline", "bs40", "bs80", "amp"]
    items = compare_modes(exp)
    assert [mode for mode, _, _ in items] == ["bs40", "bs80", "amp"]
    verdicts = {mode: comp.metric("throughput").verdict for mode, comp, _ in items}
    assert verdicts["bs40"] == stats.FASTER and verdicts["bs80"] == stats.FASTER
    assert verdicts["amp"] != stats.FASTER and verdicts["amp"] != stats.SLOWER
    assert first_compared(items).candidate == "bs40"


def test_the_table_has_one_line_per_mode(tmp_path: Path) -> None:
    exp = sweep(tmp_path)
    (exp / "results" / "empty").mkdir(parents=True)  # a mode folder without runs is not a mode with results
    text = render_overview(compare_modes(exp), "baseline", width=140)
    lines = text.splitlines()
    assert "Every mode against baseline" in lines[0]
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("───"))
    body = [line for line in lines[rule + 1:] if line.strip()]
    assert [line.split()[0] for line in body] == ["bs40", "bs80", "amp"]
    assert "FASTER" in body[0] and "FASTER" in body[1]
    assert all("4/4" in line for line in body)


def test_a_mode_that_cannot_be_compared_keeps_its_error(tmp_path: Path) -> None:
    exp = sweep(tmp_path)
    items = compare_modes(exp, modes=["bs40", "ghost"])
    assert items[0][1] is not None
    assert items[1][0] == "ghost" and items[1][1] is None and "no completed run of mode 'ghost'" in items[1][2]
    assert "error" in render_overview(items, "baseline", width=200)


# ----------------------------------------------------------------------------- the CLI


def _compare(cwd: Path, *args: str) -> "object":
    from click.testing import CliRunner

    from harness.cli import cli

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, ["compare", "--no-plots", *args], env={"COLUMNS": "140"})
    finally:
        os.chdir(old)


def test_compare_a_b_is_positional_shorthand(tmp_path: Path) -> None:
    exp = sweep(tmp_path)
    result = _compare(exp, "baseline", "bs80")
    assert result.exit_code == 0, result.output
    assert "bs80 against baseline" in result.output.splitlines()[0]
    assert "Every mode" not in result.output
    flags = _compare(exp, "--baseline", "baseline", "--candidate", "bs80")
    strip = lambda text: [line for line in text.splitlines() if "Report:" not in line and "ago" not in line]
    assert strip(result.output) == strip(flags.output)
    one = _compare(exp, "bs40")  # one mode: the candidate, against baseline
    assert one.exit_code == 0 and "bs40 against baseline" in one.output.splitlines()[0]
    folder_and_modes = _compare(tmp_path, str(exp), "bs40", "amp")
    assert folder_and_modes.exit_code == 0 and "amp against bs40" in folder_and_modes.output.splitlines()[0]


def test_compare_with_more_than_two_modes_prints_every_mode_then_the_first_report(tmp_path: Path) -> None:
    exp = sweep(tmp_path)
    result = _compare(exp)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Every mode against baseline")
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("───"))
    rows = [line.split()[0] for line in lines[rule + 1:rule + 4]]
    assert rows == ["bs40", "bs80", "amp"]
    report = next(i for i, line in enumerate(lines) if "bs40 against baseline" in line)
    assert report > rule + 3  # the full report of the first mode follows the table
    assert "Verdicts" in result.output and lines[-1].startswith("Report: ")
    doc = json.loads(_compare(exp, "--format", "json").stdout)
    assert [row["mode"] for row in doc["overview"]] == ["bs40", "bs80", "amp"]
    assert doc["comparison"]["candidate"] == "bs40"
    assert [row["verdict"] for row in doc["overview"][:2]] == ["FASTER", "FASTER"]
    markdown = _compare(exp, "--format", "markdown").stdout
    assert markdown.startswith("## Every mode against baseline\n\n| Mode |")


@pytest.mark.parametrize("args, message", [
    (["a", "b", "c"], "Error: compare takes two modes, BASELINE CANDIDATE (got 3: a b c)"),
    (["baseline", "bs40", "--candidate", "bs80"],
     "Error: give the modes either as BASELINE CANDIDATE or with --baseline/--candidate"),
    (["bs40", "--candidate", "bs80"], "Error: bs40 and --candidate bs80 both name the candidate; give one"),
    (["no/such/folder"], "Error: no/such/folder is not a folder (nor a mode name)"),
])
def test_compare_bad_positionals_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    exp = sweep(tmp_path)
    result = _compare(exp, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0] == message
    assert "Traceback" not in result.output
