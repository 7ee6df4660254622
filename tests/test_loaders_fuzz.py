"""Every loader of a file people and programs edit, fed arbitrary JSON values and bytes (issue 16).

Each input is either accepted as a valid object or refused with our own error type and a one-line
message; no other exception escapes, and the loader writes nothing (a listing of its folder is
the same before and after). Two kinds of input per loader: arbitrary bytes / JSON values, and a
valid document with one field (at any depth) replaced by an arbitrary value, which reaches far
deeper into the validation than random text does.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs_catalogue import NAME, PLAN_ID, valid_state  # noqa: E402
from fixtures.results.synth import make_run  # noqa: E402

from harness.errors import HarnessError  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None, database=None,  # write nothing into the checkout
                    suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["..", "../../x", "/etc", "a\x00b", "x" * 300, "completed", "baseline", ""]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``doc`` (lists: their first three items)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, prefix + (i,))
    return out


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def mutated(doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    paths = _paths(doc)
    return st.tuples(st.sampled_from(paths), json_values | st.just("__DELETE__")).map(
        lambda pv: _delete(doc, pv[0]) if pv[1] == "__DELETE__" else _replace(doc, pv[0], pv[1]))


def _delete(doc: Any, path: tuple) -> Any:
    if not path:
        return None
    copy = json.loads(json.dumps(doc))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1]) if isinstance(node, (dict, list)) else None
    return copy


def as_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def inputs(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return (st.binary(max_size=200) | json_values.map(as_bytes) | mutated(valid).map(as_bytes)
            | st.integers(min_value=1000, max_value=3000).map(lambda n: b"[" * n + b"]" * n))


def listing(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            st_ = os.lstat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st_.st_size, st_.st_mtime_ns)
    return out


def check_loader(root: Path, load: Callable[[], Any], accept: Callable[[Any], bool]) -> None:
    """``load()`` returns something ``accept`` takes, or raises one of our errors in one line; writes nothing."""
    before = listing(root)
    try:
        value = load()
    except HarnessError as e:
        message = str(e)
        assert message and "\n" not in message, repr(message)
        assert e.hint is None or "\n" not in e.hint
    else:
        assert accept(value), repr(value)[:300]
    assert listing(root) == before


# --------------------------------------------------------------------------- config
VALID_CONFIG = {"schema_version": 1, "competition": NAME, "kaggle_slug": NAME, "framework": "pytorch",
                "modes": {"baseline": "baseline.py"}, "seeds": [0, 1], "epochs": 1, "batch_size": 8,
                "resources": {"cpus": 1.5, "memory": "1g", "gpus": "none", "shm_size": "64m"},
                "timeout": 60.0, "parameters": {"lr": 0.1, "layers": [1, 2]}}


@SETTINGS
@given(raw=inputs(VALID_CONFIG))
@example(raw=b'{"\\n":Infinity}')  # found by a longer run: a key's newline reached the one-line error
@example(raw=b'{"modes": {"a\\nb": "x.py"}}')
def test_config_loader(raw: bytes) -> None:
    from harness.config import ExperimentConfig, load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "experiment_config.json"
        path.write_bytes(raw)

        def accept(cfg: Any) -> bool:
            # Accepted means usable: every number finite, serialisable back to strict JSON.
            json.dumps(cfg.model_dump(mode="json"), allow_nan=False)
            return isinstance(cfg, ExperimentConfig) and all(isinstance(s, int) and not isinstance(s, bool)
                                                             for s in cfg.seeds)
        check_loader(Path(tmp), lambda: load_config(path), accept)


# --------------------------------------------------------------------------- state.json
@SETTINGS
@given(data=st.data())
def test_state_loader(data: st.DataObject) -> None:
    from harness.experiment import load_experiment
    from harness.names import is_safe_name
    from harness.plan.state import load_plan

    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / f"kaggle_{NAME}"
        exp.mkdir()
        (exp / "experiment_config.json").write_text(json.dumps(VALID_CONFIG))
        raw = data.draw(inputs(valid_state(exp)))
        path = exp / "results" / "plans" / PLAN_ID / "state.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(raw)
        experiment = load_experiment(exp)

        def accept(plan: Any) -> bool:
            json.dumps(plan.to_dict(), allow_nan=False)
            ids = [r.run_id for r in plan.runs if r.run_id] + [p for r in plan.runs for p in r.previous_run_ids]
            return plan.plan_id == PLAN_ID and all(is_safe_name(i) for i in ids) \
                and all(r.mode in VALID_CONFIG["modes"] for r in plan.runs)
        check_loader(Path(tmp), lambda: load_plan(experiment, PLAN_ID), accept)


# --------------------------------------------------------------------------- results.json and events.jsonl
def _valid_results() -> dict[str, Any]:
    return make_run(mode="optimization", seed=0, n_batches=6, warmup=2, rng=np.random.default_rng(0),
                    run_id="20240115T103000-s0-aaaa", started_at=1705312200.0, experiment=NAME)


def _accept_run(result: Any) -> bool:
    """An accepted run reduces for compare without error, and every number it gives is finite."""
    from harness.compare.analysis import reduce_run
    from harness.errors import ResultsError

    try:
        run = reduce_run(result)
    except ResultsError as e:
        assert "\n" not in str(e)
        return True
    assert np.isfinite(run.batch_dt).all() and (run.batch_dt >= 0).all()
    assert all(v is None or np.isfinite(v) for v in run.values.values()), run.values
    return True


@SETTINGS
@given(raw=inputs(_valid_results()))
def test_results_loader(raw: bytes) -> None:
    from harness.results import load_run

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "results" / "optimization" / "20240115T103000-s0-aaaa"
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_bytes(raw)
        check_loader(Path(tmp), lambda: load_run(run_dir), _accept_run)


def _event_lines() -> list[dict[str, Any]]:
    return [{"t": 1.0, "m": 1.0, "type": "run_start", "run_id": "20240115T103000-s0-aaaa", "mode": "optimization",
             "seed": 0, "experiment": NAME, "command": ["python"], "pid": 1},
            {"t": 1.1, "m": 1.1, "type": "batch", "i": 0, "dt": 0.05, "wait": 0.01, "n": 8, "epoch": 0},
            {"t": 1.2, "m": 1.2, "type": "batch", "i": 1, "dt": 0.05, "wait": None, "n": 8, "epoch": 0},
            {"t": 1.3, "m": 1.3, "type": "run_end", "status": "completed", "exit_code": 0, "signal": None,
             "wall_time": 0.3, "error": None}]


@SETTINGS
@given(data=st.data())
def test_events_loader(data: st.DataObject) -> None:
    from harness.results import load_run

    lines = _event_lines()
    k = data.draw(st.integers(0, len(lines) - 1))
    line = data.draw(st.binary(max_size=100) | json_values.map(as_bytes) | mutated(lines[k]).map(as_bytes)
                     | st.integers(1000, 3000).map(lambda n: b"[" * n + b"]" * n))
    raw = b"".join(as_bytes(x) + b"\n" if i != k else line + b"\n" for i, x in enumerate(lines))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "results" / "optimization" / "20240115T103000-s0-aaaa"
        run_dir.mkdir(parents=True)
        (run_dir / "events.jsonl").write_bytes(raw)
        check_loader(Path(tmp), lambda: load_run(run_dir), _accept_run)


# --------------------------------------------------------------------------- compare's cache entries
def _cache_world(tmp: Path) -> tuple[Path, Path]:
    from harness.compare import cache
    from harness.compare.analysis import reduce_run
    from harness.results import load_run, write_json_atomic

    exp = tmp / f"kaggle_{NAME}"
    run_dir = exp / "results" / "optimization" / "20240115T103000-s0-aaaa"
    write_json_atomic(run_dir / "results.json", _valid_results())
    cache.store(exp, reduce_run(load_run(run_dir)))
    assert cache.load_cached(exp, "optimization", run_dir) is not None
    return exp, run_dir


@SETTINGS
@given(data=st.data())
def test_cache_loader(data: st.DataObject) -> None:
    """A cache entry is an optimisation: a bad one is ignored (None), a good one gives finite numbers."""
    from harness.compare import cache

    with tempfile.TemporaryDirectory() as tmp:
        exp, run_dir = _cache_world(Path(tmp))
        path = cache.cache_file(exp, "optimization", run_dir)
        if data.draw(st.booleans()):
            path.write_bytes(data.draw(st.binary(max_size=300)))
        else:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
            meta = data.draw(mutated(meta))
            with open(path, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta, allow_nan=True)), **arrays)

        def accept(run: Any) -> bool:
            if run is None:
                return True
            assert np.isfinite(run.batch_dt).all() and (run.batch_dt >= 0).all()
            assert all(v is None or (isinstance(v, float) and np.isfinite(v)) for v in run.values.values())
            return isinstance(run.run_id, str) and run.mode == "optimization"
        check_loader(Path(tmp), lambda: cache.load_cached(exp, "optimization", run_dir), accept)
