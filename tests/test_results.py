"""harness.results: aggregation into the results.json schema, and rebuilding from events.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.errors import ResultsError
from harness.results import load_run, validate_results, write_json_atomic
from harness.results.build import build_mode, build_results, rebuild_from_events, split_by_mode, stats


def ev(type: str, m: float, **fields: object) -> dict:
    return {"t": 1_700_000_000.0 + m, "m": m, "type": type, **fields}


def sample(m: float, usage_ns: int, periods: int, throttled: int, working: int, oom: int = 0,
           cores: float | None = None) -> dict:
    cpu = {"usage_ns": usage_ns, "limit_cores": 2.0, "nr_periods": periods, "nr_throttled": throttled,
           "throttled_ns": throttled * 1000}
    if cores is not None:
        cpu.update(cores=cores, percent_of_limit=cores * 50)
    return ev("sample", m, cpu=cpu, memory={"usage": working + 10, "working_set": working, "limit": 1000,
                                            "percent_of_limit": working / 10, "peak": working + 20, "oom_kill": oom},
              gpus={"GPU-a": {"index": 0, "util": 50 + m, "mem_used": 100.0 * m, "mem_total": 1000.0}},
              gpu_memory_attribution="device")


def run_events() -> list[dict]:
    return [
        ev("run_start", 0.0, run_id="r1", mode="baseline", seed=3, experiment="exp", command=["python", "b.py"],
           pid=1, backend="local"),
        ev("env", 0.01, environment={"python": "3.11"}),
        sample(0.1, 0, 0, 0, 100),
        ev("mode_start", 0.2, mode="baseline", config={"batch_size": 8}),
        ev("phase", 0.25, name="train"),
        ev("batch", 0.4, i=0, dt=0.1, wait=None, n=None, epoch=0),
        ev("loss", 0.41, epoch=0, batch=0, value=2.0),
        ev("batch", 0.6, i=1, dt=0.1, wait=0.1, n=None, epoch=0),
        ev("loss", 0.61, epoch=0, batch=1, value=float("nan")),
        ev("accuracy", 0.61, epoch=0, batch=1, value=0.5),
        sample(1.1, 2_000_000_000, 10, 5, 300, cores=2.0),
        ev("batch", 0.9, i=2, dt=0.2, wait=0.1, n=None, epoch=0),  # out of file order: flushed late
        ev("loss", 0.91, epoch=0, batch=2, value=1.0),
        ev("metric", 0.95, name="lr", value=0.1, step=0),
        ev("mode_stop", 1.0, mode="baseline", total_time=0.8),
        sample(2.1, 3_000_000_000, 20, 5, 200, cores=1.0),
        ev("run_end", 2.2, status="completed", exit_code=0, signal=None, wall_time=2.2, error=None),
    ]


def test_stats_match_numpy_conventions() -> None:
    s = stats([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(math.sqrt(1.25))
    assert s["p95"] == pytest.approx(3.85)
    assert stats([])["mean"] is None


def test_build_results_aggregates_the_whole_schema(tmp_path: Path) -> None:
    doc = build_results(run_events(), {})
    validate_results(doc, Path("x"))
    assert doc["schema_version"] == 1 and doc["experiment_name"] == "exp"
    assert doc["run"]["run_id"] == "r1" and doc["run"]["seed"] == 3 and doc["run"]["status"] == "completed"
    assert doc["environment"] == {"python": "3.11"}
    mode = doc["modes"]["baseline"]
    assert mode["config"] == {"batch_size": 8}
    assert mode["batch_times"] == [[0, 0.1], [1, 0.1], [2, 0.2]]
    assert mode["data_wait_times"] == [[1, 0.1], [2, 0.1]]
    assert mode["metrics"]["losses"] == [[0, 0, 2.0], [0, 1, None], [0, 2, 1.0]]  # NaN -> null
    assert mode["metrics"]["custom"] == {"lr": [[0, 0.1]]}
    assert mode["phases"] == [[1_700_000_000.25, "train"]]
    s = mode["summary"]
    assert s["total_time"] == 0.8 and s["num_batches"] == 3
    assert s["data_wait_fraction"] == pytest.approx(0.2 / 0.6)
    assert s["throughput"] == pytest.approx(24 / 0.6)  # batch_size from config, over dt + wait
    assert s["loss"] == {"initial": 2.0, "final": 1.0, "min": 1.0, "max": 2.0}
    assert s["accuracy"] == {"initial": 0.5, "final": 0.5, "best": 0.5}
    assert s["cpu"]["mean_cores"] == 1.5 and s["cpu"]["throttled_fraction"] == 0.25
    assert s["memory"] == {"peak_bytes": 300, "cgroup_peak_bytes": 320, "mean_bytes": 200, "oom_kills": 0}
    assert s["gpu"]["GPU-a"]["peak_memory_mb"] == 210.0
    usage = mode["resource_usage"]
    assert usage["cpu_throttled"] == [[1_700_000_001.1, 0.5], [1_700_000_002.1, 0.0]]
    assert usage["limits"] == {"cpu_cores": 2.0, "memory_bytes": 1000}
    assert usage["gpu_memory_attribution"] == "device"
    write_json_atomic(tmp_path / "results.json", doc)  # strict JSON: allow_nan=False passes
    assert load_run(tmp_path).data == json.loads((tmp_path / "results.json").read_text())


def test_seed_format_keys_are_all_present() -> None:
    mode = build_mode([ev("batch", 1.0, i=0, dt=0.1, wait=None, n=4, epoch=0)])
    assert {"config", "batch_times", "resource_usage", "metrics", "summary"} <= set(mode)
    assert {"cpu_usage", "memory_usage", "gpu_usage", "gpu_memory"} <= set(mode["resource_usage"])
    assert {"losses", "accuracies"} <= set(mode["metrics"])
    assert {"total_time", "batch_time", "loss", "accuracy"} <= set(mode["summary"])
    assert {"mean", "std", "min", "max"} <= set(mode["summary"]["batch_time"])
    assert mode["summary"]["throughput"] == pytest.approx(40.0)


def test_throughput_is_unknown_without_batch_sizes() -> None:
    mode = build_mode([ev("batch", 1.0, i=0, dt=0.1, wait=None, n=None, epoch=0)])
    assert mode["summary"]["throughput"] is None


def test_split_by_mode_sorts_by_monotonic_time_and_defaults_to_the_agent_mode() -> None:
    events = [ev("batch", 3.0, i=0), ev("mode_start", 2.0, mode="optimization"), ev("sample", 1.0),
              ev("mode_stop", 4.0, mode="optimization"), ev("sample", 5.0)]
    parts = split_by_mode(events, "baseline")
    assert [e["m"] for e in parts["baseline"]] == [1.0, 5.0]
    assert [e["m"] for e in parts["optimization"]] == [2.0, 3.0, 4.0]


def write_events(run_dir: Path, events: list[dict], tail: str = "") -> None:
    run_dir.mkdir(parents=True)
    text = "".join(json.dumps(e) + "\n" for e in events) + tail
    (run_dir / "events.jsonl").write_text(text)


def test_rebuild_drops_a_cut_last_line_and_says_interrupted(tmp_path: Path) -> None:
    events = [e for e in run_events() if e["type"] != "run_end"]
    run_dir = tmp_path / "results" / "baseline" / "r1"
    write_events(run_dir, events, tail='{"t": 1, "m": 3.0, "type": "bat')
    doc = rebuild_from_events(run_dir)
    assert doc["run"]["status"] == "interrupted" and doc["run"]["dropped_lines"] == 1
    assert doc["run"]["wall_time"] == pytest.approx(2.1)
    assert doc["modes"]["baseline"]["summary"]["num_batches"] == 3
    loaded = load_run(run_dir)
    assert loaded.rebuilt and loaded.status == "interrupted"


def test_rebuild_takes_the_status_from_run_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    write_events(run_dir, run_events())
    assert rebuild_from_events(run_dir)["run"]["status"] == "completed"


def test_rebuild_sees_an_oom_kill_in_the_samples(tmp_path: Path) -> None:
    events = [e for e in run_events() if e["type"] != "run_end"] + [sample(3.0, 4_000_000_000, 30, 5, 999, oom=1)]
    run_dir = tmp_path / "r1"
    write_events(run_dir, events)
    assert rebuild_from_events(run_dir)["run"]["status"] == "oom_killed"


def test_rebuild_without_run_start_takes_mode_and_id_from_the_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "optimization" / "20240101T000000-s0-abcd"
    write_events(run_dir, [ev("batch", 1.0, i=0, dt=0.1, wait=None, n=2, epoch=0)])
    doc = rebuild_from_events(run_dir)
    assert doc["run"]["mode"] == "optimization" and doc["run"]["run_id"] == run_dir.name
    validate_results(doc, run_dir)


def test_rebuild_of_an_empty_or_missing_file_is_a_results_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not found"):
        rebuild_from_events(tmp_path)
    (tmp_path / "events.jsonl").write_text("garbage\n")
    with pytest.raises(ResultsError, match="holds no events"):
        rebuild_from_events(tmp_path)


def test_rebuild_keeps_the_fingerprint_of_run_start(tmp_path: Path) -> None:
    fingerprint = {"hash": "0123456789abcdef", "version": 1, "parts": {"command": ["python", "b.py"]}}
    events = run_events()
    events[0]["fingerprint"] = fingerprint
    run_dir = tmp_path / "r1"
    write_events(run_dir, [e for e in events if e["type"] != "run_end"])
    assert rebuild_from_events(run_dir)["run"]["fingerprint"] == fingerprint
