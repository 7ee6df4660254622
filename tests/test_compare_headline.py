"""The honest headline on recorded results: end-to-end vs steady state, noise-band sentences, quality (issue 10)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fixtures.results.synth import write_experiment
from harness.cli import cli
from harness.compare import compare_experiment, stats
from harness.compare.headline import within_noise_sentence
from harness.compare.tables import headline_sentence

CONFIG = {"epochs": 1, "batch_size": 32}


def _cli(*args: str) -> "object":
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "120"}, catch_exceptions=False)


def _cache_warmup(root: Path, startup: float, **extra: object) -> Path:
    """A feature-cache style optimization: 2.5x faster per step, ``startup`` s before its first batch."""
    return write_experiment(root, seeds=[0, 1, 2], config_extra=extra or None, modes={
        "baseline": {"step": 0.05, "n_batches": 4000, "config": CONFIG},
        "optimization": {"step": 0.02, "n_batches": 4000, "startup": startup, "config": CONFIG}})


def test_a_30_s_warm_up_puts_both_figures_in_the_headline(tmp_path: Path) -> None:
    comp = compare_experiment(_cache_warmup(tmp_path / "warm", startup=31.0))
    assert comp.primary_metric == "end_to_end"  # runs under 10 minutes
    assert comp.headline.spec.key == "total_time" and comp.headline.verdict == stats.FASTER
    line = headline_sentence(comp)
    assert line.startswith("optimization is FASTER: 1.8"), line
    assert "x end-to-end (2.5" in line and "x once warm; it spends " in line and " s more warming up); " in line
    extra = float(line.split("it spends ")[1].split(" s more")[0])
    assert 28.0 <= extra <= 30.5  # 30 s of start-up, less the baseline's slower warm-up batches
    payback = [d for d in comp.diagnosis if "pays for itself after about" in d]
    assert len(payback) == 1, comp.diagnosis
    # ~29.4 s more fixed time / ~30 ms saved per batch = ~980 batches; an epoch is 4000 batches.
    assert "pays for itself after about 9" in payback[0] and "batches (0.2 epochs)" in payback[0], payback


def test_without_a_warm_up_difference_the_headline_has_one_figure(tmp_path: Path) -> None:
    comp = compare_experiment(_cache_warmup(tmp_path / "same", startup=1.0))
    line = headline_sentence(comp)
    assert line.startswith("optimization is FASTER: 2.5") and "once warm" not in line, line
    assert not any("pays for itself" in d for d in comp.diagnosis)


def test_primary_metric_steady_throughput_leads_with_steady_state(tmp_path: Path) -> None:
    comp = compare_experiment(_cache_warmup(tmp_path / "steady", startup=31.0, primary_metric="steady_throughput"))
    assert comp.headline.spec.key == "throughput"
    line = headline_sentence(comp)
    assert line.startswith("optimization is FASTER: 2.5") and "x once warm (1.8" in line and "x end-to-end;" in line


def test_warm_up_that_makes_end_to_end_slower_says_so(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "compile", seeds=[0, 1, 2], modes={
        "baseline": {"step": 0.05, "config": CONFIG},
        "optimization": {"step": 0.04, "startup": 20.0, "config": CONFIG}})
    comp = compare_experiment(exp)
    assert comp.headline.verdict == stats.SLOWER
    line = headline_sentence(comp)
    assert line.startswith("optimization is SLOWER: ") and "FASTER once warm; it spends 18." in line, line


def test_within_noise_carries_the_estimate_and_its_side(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "small", seeds=[0, 1, 2, 3, 4, 5], rng_seed=3, modes={
        "baseline": {"step": 0.05, "run_sd": 0.004, "config": CONFIG},
        "optimization": {"step": 0.051, "run_sd": 0.004, "config": CONFIG}},
        config_extra={"primary_metric": "steady_throughput"})
    comp = compare_experiment(exp)
    h = comp.headline
    assert h.verdict == stats.WITHIN_NOISE, (h.test, h.verdict)
    line = headline_sentence(comp)
    assert line.startswith("optimization is SLOWER by "), line
    assert "95 % CI [" in line and line.endswith("partly inside the ±2 % noise band.")
    low, high = (float(x) for x in line.split("CI [")[1].split("]")[0].split(", "))
    change = float(line.split("SLOWER by ")[1].split(" %")[0])
    assert 0 < low < 2.0 < high and low <= change <= high


def test_within_noise_sentence_for_a_faster_time(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "t", seeds=[0, 1, 2], modes={"baseline": {}, "optimization": {}})
    comp = compare_experiment(exp)
    m = comp.metric("total_time")
    from dataclasses import replace

    m.test = replace(m.test, ratio=0.97, low=0.955, high=0.985)
    assert within_noise_sentence(comp, m) == ("optimization is FASTER by 3.0 % in end-to-end time, 95 % CI "
                                              "[1.5, 4.5] %, partly inside the ±2 % noise band.")


def _learns_worse(root: Path) -> Path:
    """5 % faster, 2 points less accurate, across 3 seeds."""
    return write_experiment(root, seeds=[0, 1, 2], modes={
        "baseline": {"step": 0.05, "run_sd": 0.005, "acc_final": 0.937, "acc_sd": 0.002, "config": CONFIG},
        "optimization": {"step": 0.0475, "run_sd": 0.005, "acc_final": 0.917, "acc_sd": 0.002, "config": CONFIG}})


def test_faster_but_learns_worse_is_the_second_headline_line(tmp_path: Path) -> None:
    exp = _learns_worse(tmp_path / "worse")
    comp = compare_experiment(exp)
    assert comp.is_worse
    assert comp.quality_line.startswith("but accuracy is lower: ") and "(p=" in comp.quality_line
    cand, base = (float(x) for x in comp.quality_line.split(": ")[1].split(" (")[0].split(" vs "))
    assert 0.01 < base - cand < 0.03  # the planted 2 points
    result = _cli("compare", str(exp), "--no-plots")
    lines = result.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("optimization is "))
    assert lines[head + 1] == comp.quality_line
    assert result.exit_code == 0
    assert _cli("compare", str(exp), "--no-plots", "--fail-if-worse").exit_code == 1
    fine = write_experiment(tmp_path / "fine", seeds=[0, 1, 2], modes={
        "baseline": {"acc_sd": 0.002, "config": CONFIG}, "optimization": {"acc_sd": 0.002, "config": CONFIG}})
    assert not compare_experiment(fine).is_worse
    assert _cli("compare", str(fine), "--no-plots", "--fail-if-worse").exit_code == 0


def test_a_named_quality_metric_from_log_metric(tmp_path: Path) -> None:
    def auc(value: float) -> dict:
        return {"val_auc": [[0, value - 0.1], [1, value]]}

    exp = write_experiment(tmp_path / "auc", seeds=[0, 1, 2],
                           config_extra={"quality_metric": {"name": "val_auc", "better": "higher"}}, modes={
        "baseline": {"config": CONFIG, "per_seed": {0: {"custom": auc(0.80)}, 1: {"custom": auc(0.81)},
                                                    2: {"custom": auc(0.805)}}},
        "optimization": {"config": CONFIG, "per_seed": {0: {"custom": auc(0.75)}, 1: {"custom": auc(0.76)},
                                                        2: {"custom": auc(0.755)}}}})
    comp = compare_experiment(exp)
    assert comp.quality_line is not None and comp.quality_line.startswith("but val_auc is lower: 0.755 vs 0.805")
