"""compare on runs from several machines (--executor ray): the hardware warning and node/mode confounding."""

from __future__ import annotations

from pathlib import Path

from fixtures.results.synth import write_experiment
from harness.compare import compare_experiment, stats
from harness.results import load_results_file, write_json_atomic

XEON = {"cpu_model": "Intel(R) Xeon(R) Gold 6248", "cpu_count": 8, "gpu_names": [], "gpu_count": 0, "driver": None}
EPYC = {"cpu_model": "AMD EPYC 7763 64-Core Processor", "cpu_count": 8, "gpu_names": [], "gpu_count": 0,
        "driver": None}
NODES = {"a": {**XEON, "hostname": "node-a", "machine_id": "aaaa"}, "b": {**EPYC, "hostname": "node-b",
                                                                         "machine_id": "bbbb"}}


def place(exp: Path, where) -> None:
    """Record ``where(mode, seed)`` ("a" or "b") as each run's node hardware, as the Ray executor does."""
    for path in (exp / "results").glob("*/*/results.json"):
        data = load_results_file(path)
        node = where(data["run"]["mode"], data["run"]["seed"])
        data["run"]["hardware"] = NODES[node]
        data["run"]["node"] = NODES[node]["hostname"]
        write_json_atomic(path, data)


def test_one_mode_per_node_cannot_separate_node_from_mode(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "split", seeds=[0, 1, 2],
                           modes={"baseline": {"step": 0.05}, "optimization": {"step": 0.04}})
    assert compare_experiment(exp).headline.verdict == stats.FASTER  # before: a clear verdict
    place(exp, lambda mode, seed: "a" if mode == "baseline" else "b")
    comp = compare_experiment(exp)
    assert comp.headline.verdict == stats.INCONCLUSIVE
    assert all(m.verdict == stats.INCONCLUSIVE for m in comp.speed if m.verdict is not None)
    assert any(w.startswith("INCONCLUSIVE: baseline ran only on node-a and optimization only on node-b: the "
                            "comparison cannot separate node from mode") for w in comp.warnings), comp.warnings
    hw = [f for f in comp.fairness if f.startswith("Modes ran on different hardware")]
    assert hw == ["Modes ran on different hardware: baseline on Intel(R) Xeon(R) Gold 6248 x8, no GPU, host node-a; "
                  "optimization on AMD EPYC 7763 64-Core Processor x8, no GPU, host node-b. Their times differ "
                  "by machine as well as by mode."]


def test_different_hardware_per_mode_is_named_even_when_machines_overlap(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "mixed", seeds=[0, 1, 2], modes={"baseline": {}, "optimization": {}})
    # Baselines on a and b, optimizations only on b: hardware sets differ, but node b ran both modes.
    place(exp, lambda mode, seed: "b" if mode == "optimization" or seed == 0 else "a")
    comp = compare_experiment(exp)
    assert any(f.startswith("Modes ran on different hardware: baseline on AMD EPYC") and "Intel(R) Xeon" in f
               for f in comp.fairness), comp.fairness
    assert not any("cannot separate node from mode" in w for w in comp.warnings)


def test_seed_pairs_on_one_node_each_compare_within_machines(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "pairs", seeds=[0, 1, 2, 3, 4],
                           modes={"baseline": {"step": 0.05}, "optimization": {"step": 0.04}})
    place(exp, lambda mode, seed: "a" if seed % 2 == 0 else "b")
    comp = compare_experiment(exp)
    assert comp.paired and comp.headline.verdict == stats.FASTER
    assert not any("different hardware" in f for f in comp.fairness)
    assert not any("cannot separate" in w for w in comp.warnings)
    assert any(d.startswith("Runs came from 2 machines (AMD EPYC") and "compares the modes within machines" in d
               for d in comp.diagnosis), comp.diagnosis


def test_runs_without_node_hardware_get_no_node_notes(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "one", seeds=[0, 1, 2], modes={"baseline": {}, "optimization": {}})
    comp = compare_experiment(exp)
    assert not any("hardware" in f and "Modes ran on" in f for f in comp.fairness)
    assert not any("machines" in d for d in comp.diagnosis)
