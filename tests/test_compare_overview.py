"""Every mode against the baseline (issue #11): the library on synthetic results files."""

from __future__ import annotations

from pathlib import Path

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
