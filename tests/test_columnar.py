"""The columnar twin of results.json: the same run, read without the JSON parse, and never a stale one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.results.synth import write_experiment
from harness.results import columnar
from harness.compare import analysis, reduce
from harness.compare.analysis import compare_experiment, load_mode_runs, reduce_run
from harness.results import load_run

MODES = {"baseline": {"n_batches": 600, "step": 0.05}, "optimization": {"n_batches": 600, "step": 0.04}}


def _experiment(tmp_path: Path, twins: bool = True) -> Path:
    return write_experiment(tmp_path / "exp", modes=MODES, seeds=[0, 1, 2], twins=twins)


def _run_dirs(exp: Path) -> list[Path]:
    return sorted(p.parent for p in exp.glob("results/*/*/results.json"))


def test_the_twin_is_named_by_the_results_file_and_holds_the_same_document(tmp_path: Path) -> None:
    run_dir = _run_dirs(_experiment(tmp_path))[0]
    twins = list(run_dir.glob("batches-*.npz"))
    assert twins == [columnar.path_for(run_dir, columnar.digest(run_dir / "results.json"))]
    original = json.loads((run_dir / "results.json").read_text())
    doc = columnar.read(run_dir)
    mode = original["run"]["mode"]
    for key in ("batch_times", "data_wait_times", "batch_sizes"):
        assert isinstance(doc["modes"][mode][key], np.ndarray)
        np.testing.assert_array_equal(doc["modes"][mode][key], np.array(original["modes"][mode][key], dtype=float))
    np.testing.assert_array_equal(doc["modes"][mode]["metrics"]["losses"],
                                  np.array(original["modes"][mode]["metrics"]["losses"], dtype=float))
    for key in ("batch_times", "data_wait_times", "batch_sizes"):
        original["modes"][mode].pop(key)
        doc["modes"][mode].pop(key)
    for key in ("losses", "accuracies"):
        original["modes"][mode]["metrics"].pop(key)
        doc["modes"][mode]["metrics"].pop(key)
    assert doc == original  # everything else: the document itself
    assert columnar.twin_size(run_dir) < (run_dir / "results.json").stat().st_size


def test_a_run_reduces_the_same_from_the_twin_as_from_results_json(tmp_path: Path) -> None:
    for run_dir in _run_dirs(_experiment(tmp_path)):
        from_json = reduce_run(load_run(run_dir))
        from_twin = reduce_run(analysis.load_run_fast(run_dir))
        assert from_twin.values == from_json.values and from_twin.steps == from_json.steps
        for name in ("batch_index", "step_times", "batch_dt", "data_wait", "batch_sizes", "losses", "accuracies"):
            np.testing.assert_array_equal(getattr(from_twin, name), getattr(from_json, name))
        assert (from_twin.run_id, from_twin.summary, from_twin.resource_usage) == \
            (from_json.run_id, from_json.summary, from_json.resource_usage)


def test_compare_reads_the_twins_and_parses_no_results_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _experiment(tmp_path)
    expected = compare_experiment(write_experiment(tmp_path / "plain", modes=MODES, seeds=[0, 1, 2]))
    parsed: list[Path] = []
    real = reduce.load_run
    monkeypatch.setattr(reduce, "load_run", lambda path: parsed.append(path) or real(path))
    comp = compare_experiment(exp)
    assert parsed == []
    assert comp.headline.verdict == expected.headline.verdict
    assert comp.headline.test.ratio == pytest.approx(expected.headline.test.ratio, rel=1e-12)


def test_a_changed_results_json_makes_the_twin_stale_and_compare_reads_the_json(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    run_dir = _run_dirs(exp)[0]
    data = json.loads((run_dir / "results.json").read_text())
    data["modes"][data["run"]["mode"]]["batch_times"] = data["modes"][data["run"]["mode"]]["batch_times"][:100]
    (run_dir / "results.json").write_text(json.dumps(data))
    assert columnar.read(run_dir) is None
    runs, _, _ = load_mode_runs(exp, data["run"]["mode"], use_cache=False)
    assert [r.batch_index.size for r in runs if r.path == run_dir] == [100]
    # Rewriting the twin (what `harness run` does after it edits a results.json) replaces the old one.
    columnar.write(run_dir)
    assert len(list(run_dir.glob("batches-*.npz"))) == 1 and columnar.read(run_dir) is not None


def test_a_corrupt_or_pickled_twin_is_ignored(tmp_path: Path) -> None:
    run_dir = _run_dirs(_experiment(tmp_path))[0]
    twin = next(run_dir.glob("batches-*.npz"))
    twin.write_bytes(b"PK\x03\x04 not really a zip")
    assert columnar.read(run_dir) is None
    np.savez(twin.open("wb"), __meta__=np.array(json.dumps({"version": columnar.VERSION, "document": {}})),
             __names__=np.array(["baseline/batch_times"]), a0=np.array([object()], dtype=object))
    assert columnar.read(run_dir) is None  # loaded with allow_pickle=False: an object array is refused
    assert reduce_run(analysis.load_run_fast(run_dir)).batch_index.size == 600  # results.json still serves


def test_the_agent_writes_the_twin_beside_results_json(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("from harness.monitor import ExperimentMonitor\n"
                      "m = ExperimentMonitor('twin')\n"
                      "m.start_mode('baseline')\n"
                      "for i, b in enumerate(m.batches([[1, 2]] * 50, epoch=0)):\n"
                      "    m.log_loss(0, i, 1.0 / (i + 1))\n"
                      "m.stop_mode()\n")
    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "harness.agent", "--mode", "baseline", "--results", str(run_dir),
                    "--seed", "0", "--run-id", "r1", "--experiment", "twin", "--interval", "0.2",
                    "--backend", "local", "--", sys.executable, str(script)], check=True, timeout=120)
    doc = columnar.read(run_dir)
    assert doc is not None
    assert doc["modes"]["baseline"]["batch_times"].shape == (50, 2)
    assert doc["modes"]["baseline"]["metrics"]["losses"].shape == (50, 3)
    assert reduce_run(load_run(run_dir)).values == reduce_run(analysis.load_run_fast(run_dir)).values
