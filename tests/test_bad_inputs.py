"""Every bad input is one ``Error:`` line, exit 2, and changes nothing (issues 13 and 16).

The table lives in ``tests/bad_inputs_catalogue.py``: names, config fields, CLI flags, results
files and plan state files. For each case a real experiment folder is built, broken in one
place, and the command is run through the CLI. The test then holds the refusal to the rules:
the exit code, one ``Error:`` line (plus at most a ``hint:``), no traceback, and a listing of the
experiment folder, its parent and the folder beside it (paths, kinds, sizes, modes, modification
times) identical before and after; with an engine, the experiment's images too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs_catalogue import (CASES, NAME, PLAN_ID, RUN_IDS, Case, batch_time, events_only,  # noqa: E402
                                  fill, result, result_text, valid_state, _events_completed)
from conftest import _engine_answers  # noqa: E402
from fixtures.results.synth import write_experiment  # noqa: E402

TINY_SCRIPT = "print('ran', flush=True)\n"


# --------------------------------------------------------------------------- worlds
def _tiny(exp: Path) -> None:
    exp.mkdir(parents=True)
    config = {"schema_version": 1, "competition": NAME, "kaggle_slug": NAME, "framework": "pytorch",
              "modes": {"baseline": "baseline.py", "optimization": "optimization.py"}, "seeds": [0],
              "epochs": 1, "batch_size": 8, "data_dir": "data", "sampling_interval": 0.25,
              "resources": {"cpus": None, "memory": "1g", "gpus": "none", "shm_size": "64m"}}
    (exp / "experiment_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (exp / "baseline.py").write_text(TINY_SCRIPT)
    (exp / "optimization.py").write_text(TINY_SCRIPT)


def _state(exp: Path) -> None:
    _tiny(exp)
    path = exp / "results" / "plans" / PLAN_ID / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(valid_state(exp), indent=1) + "\n")


def _results(exp: Path, candidates: int = 1) -> None:
    fast = {"n_batches": 40, "warmup": 4}
    write_experiment(exp, modes={"baseline": fast, "optimization": dict(fast, step=0.04)}, seeds=[0, 1],
                     experiment=NAME, compact=True)
    for run_dir in sorted((exp / "results" / "optimization").iterdir())[candidates:]:
        for f in run_dir.iterdir():
            f.unlink()
        run_dir.rmdir()


WORLDS = {"tiny": _tiny, "state": _state, "results": _results, "bare": lambda exp: None}


def make_world(tmp_path: Path, world: str) -> tuple[Path, Path]:
    """tmp/outside/, tmp/parent/neighbour.txt and (unless bare) tmp/parent/kaggle_badinput/."""
    (tmp_path / "outside").mkdir()
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "neighbour.txt").write_text("someone else's file\n")
    exp = parent / f"kaggle_{NAME}"
    WORLDS[world](exp)
    return parent, exp


# --------------------------------------------------------------------------- what "nothing changed" means
def listing(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path under ``root`` (and root itself): kind, size (files), permission bits, mtime."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [".", *dirs, *files]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            out[os.path.relpath(path, root)] = (kind, size, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def experiment_images() -> set[str] | None:
    """Ids of images made for the test experiment (by label or by name); None without an engine."""
    if not _engine_answers():
        return None
    import docker

    client = docker.from_env()
    try:
        found = {i.id for i in client.images.list(filters={"label": f"harness.experiment={NAME}"})}
        found |= {i.id for i in client.images.list(name=f"harness-{NAME}")}
        return found
    finally:
        client.close()


def assert_one_line_refusal(result: Any, case: Case) -> None:
    where = f"{case.id}: exit {result.exit_code}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{where}\n{result.exception!r}"
    assert result.exit_code == case.code, where
    assert "Traceback" not in result.output, where
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("Error: "), where
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), where
    assert case.error.lower() in lines[0].lower(), where
    assert result.stdout == "", where


def _id(case: Case) -> str:
    return case.id


def _marks(case: Case) -> list[Any]:
    marks = [pytest.mark.docker] if case.docker else []
    return marks


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c), id=c.id) for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  case: Case) -> None:
    parent, exp = make_world(tmp_path, case.world)
    if case.mutate is not None:
        case.mutate(exp)
    monkeypatch.chdir(tmp_path / "outside")
    before, images_before = listing(tmp_path), experiment_images()
    result = CliRunner().invoke(cli, fill(case.argv, tmp_path, parent, exp), input="n\n")
    assert_one_line_refusal(result, case)
    assert listing(tmp_path) == before, f"{case.id}: a refused command changed files"
    assert experiment_images() == images_before, f"{case.id}: a refused command left an image behind"


def test_catalogue_is_big_and_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 100
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"new", "config", "flag", "results", "state", "events", "compare", "run", "resume"} <= kinds


# --------------------------------------------------------------------------- the worlds themselves are valid
def test_tiny_world_dry_run_is_accepted(tmp_path: Path) -> None:
    parent, exp = make_world(tmp_path, "tiny")
    result = CliRunner().invoke(cli, ["run", "baseline", "-e", str(exp), "--backend", "local", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was run" in result.stdout


def test_state_world_resumes_with_nothing_to_do(tmp_path: Path) -> None:
    parent, exp = make_world(tmp_path, "state")
    result = CliRunner().invoke(cli, ["run", "--resume", "-e", str(exp), "--backend", "local"])
    assert result.exit_code == 0, result.output
    assert f"Plan {PLAN_ID}: all 2 runs completed already; nothing to do." in result.stdout


def test_results_world_compares(tmp_path: Path) -> None:
    parent, exp = make_world(tmp_path, "results")
    result = CliRunner().invoke(cli, ["compare", str(exp), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "Skipped" not in result.output


# --------------------------------------------------------------------------- enough runs remain: skip and list
IMPOSSIBLE = [
    ("dt-nan", batch_time(float("nan")), "NaN"),
    ("dt-infinity", batch_time(float("inf")), "Infinity"),
    ("dt-negative", batch_time(-0.25), "batch_times"),
    ("dt-1e308", batch_time(1e308), "batch_times"),
    ("dt-string", batch_time("slow"), "batch_times"),
    ("wall-time-string", result(run__wall_time="long"), "wall_time"),
    ("wall-time-infinity", result(run__wall_time=float("inf")), "Infinity"),
    ("not-json", result_text("{ cut"), "not valid JSON"),
    ("deep", result_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ("events-dt-nan", events_only(_events_completed(float("nan"))), "batch"),
]


@pytest.mark.parametrize("mutate,reason", [pytest.param(m, r, id=i) for i, m, r in IMPOSSIBLE])
def test_impossible_run_is_skipped_and_listed(tmp_path: Path, mutate: Any, reason: str) -> None:
    """One of two candidate runs is broken: the verdict rests on the other, the broken one is listed."""
    parent, exp = make_world(tmp_path, "tiny")
    exp2 = parent / "kaggle_two"
    _results(exp2, candidates=2)
    first = sorted((exp2 / "results" / "optimization").iterdir())[0]
    # The mutations act on "the only optimization run": hide the other one while breaking this one.
    second = sorted((exp2 / "results" / "optimization").iterdir())[1]
    aside = tmp_path / "aside"
    second.rename(aside)
    mutate(exp2)
    aside.rename(second)
    result = CliRunner().invoke(cli, ["compare", str(exp2), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "Skipped (unreadable results)" in result.stdout, result.stdout
    skipped = result.stdout.split("Skipped (unreadable results)", 1)[1]
    assert first.name in skipped and reason in skipped, skipped
    doc = json.loads((exp2 / "results" / "comparison" / "comparison.json").read_text())
    used = json.dumps(doc)
    assert first.name not in [r for r in re.findall(r'"run_id": "([^"]+)"', used)]


# --------------------------------------------------------------------------- new --force
def test_force_moves_an_old_experiment_aside_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    runner = CliRunner()
    assert runner.invoke(cli, ["new", "demo", "--root", str(root)]).exit_code == 0
    old = root / "kaggle_demo"
    (old / "baseline.py").write_text("# my edits\n")
    (old / "data").mkdir(exist_ok=True)
    (old / "data" / "train.csv").write_text("a\n1\n")
    result = runner.invoke(cli, ["new", "demo", "--root", str(root), "--force"])
    assert result.exit_code == 0, result.output
    (aside,) = [p for p in root.iterdir() if p.name.startswith("kaggle_demo.bak-")]
    assert re.fullmatch(r"kaggle_demo\.bak-\d{8}T\d{6}(-\d+)?", aside.name), aside.name
    assert f"Moved the old folder to {aside}" in result.stdout
    assert (aside / "baseline.py").read_text() == "# my edits\n"  # the user's code is kept, aside
    assert (old / "baseline.py").read_text() != "# my edits\n"  # and regenerated in place
    assert (old / "data" / "train.csv").read_text() == "a\n1\n"  # data carried over
    assert (old / "experiment_config.json").is_file()


def test_force_twice_keeps_both_old_folders(tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    runner = CliRunner()
    for _ in range(3):
        assert runner.invoke(cli, ["new", "demo", "--root", str(root), "--force"]).exit_code == 0
    names = sorted(p.name for p in root.iterdir())
    assert names[0] == "kaggle_demo" and len([n for n in names if ".bak-" in n]) == 2, names


# --------------------------------------------------------------------------- modes of written files (issue 13 item 9)
def test_files_harness_writes_respect_the_umask(tmp_path: Path) -> None:
    """With umask 022, every file a run, a plan and a compare write is 0644 (a teammate can read it)."""
    old = os.umask(0o022)
    try:
        parent, exp = make_world(tmp_path, "tiny")
        runner = CliRunner()
        result = runner.invoke(cli, ["run", "baseline", "optimization", "-e", str(exp), "--backend", "local"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(cli, ["compare", str(exp), "--no-plots"])
        files = [p for p in (exp / "results").rglob("*") if p.is_file()]
        names = {p.name for p in files}
        assert {"results.json", "events.jsonl", "stdout.log", "state.json", "comparison.json"} <= names, names
        wrong = {str(p.relative_to(exp)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
                 if stat.S_IMODE(p.stat().st_mode) != 0o644}
        assert not wrong, wrong
        folders = [p for p in (exp / "results").rglob("*") if p.is_dir()]
        wrong = {str(p.relative_to(exp)): oct(stat.S_IMODE(p.stat().st_mode)) for p in folders
                 if stat.S_IMODE(p.stat().st_mode) != 0o755}
        assert not wrong, wrong
    finally:
        os.umask(old)


def test_resume_refusal_names_the_file_and_hints_a_new_plan(tmp_path: Path) -> None:
    parent, exp = make_world(tmp_path, "state")
    path = exp / "results" / "plans" / PLAN_ID / "state.json"
    data = json.loads(path.read_text())
    data["options"]["cpus"] = "x"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["run", "--resume", "-e", str(exp)])
    assert result.exit_code == 2
    error, hint = result.stderr.splitlines()
    assert error.startswith(f"Error: {path}: options.cpus: ")
    assert hint == "hint: `harness run` without --resume starts a new plan"


def test_traversal_run_id_writes_nothing_outside(tmp_path: Path) -> None:
    """The reported case: a running run whose id climbs out of the experiment."""
    parent, exp = make_world(tmp_path, "state")
    path = exp / "results" / "plans" / PLAN_ID / "state.json"
    data = json.loads(path.read_text())
    data["runs"][0].update(status="running", run_id="../../../outside")
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["run", "--resume", "-e", str(exp), "--backend", "local"])
    assert result.exit_code == 2, result.output
    assert list((tmp_path / "outside").iterdir()) == []
    assert sorted(p.name for p in parent.iterdir()) == ["kaggle_badinput", "neighbour.txt"]
    assert not (exp / "results" / "plans" / PLAN_ID / "lock").exists()


def test_run_ids_of_the_valid_state_are_safe() -> None:
    from harness.names import is_safe_name

    assert all(is_safe_name(r) for r in RUN_IDS) and is_safe_name(PLAN_ID)


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/etc", "a\x00b", "x" * 300, "", " a", "a\\b"])
def test_unsafe_names(name: str) -> None:
    from harness.names import is_safe_name

    assert not is_safe_name(name)


def test_compare_refusal_leaves_the_cache_alone(tmp_path: Path) -> None:
    """Baseline runs are read (and would be cached) before the candidate turns out to have none."""
    parent, exp = make_world(tmp_path, "results")
    for run_dir in (exp / "results" / "optimization").iterdir():
        (run_dir / "results.json").write_text("{}")
    result = CliRunner().invoke(cli, ["compare", str(exp), "--no-plots"])
    assert result.exit_code == 2
    assert "1 unreadable" in result.stderr and "schema_version" in result.stderr, result.stderr
    assert not (exp / "results" / "comparison").exists()


@pytest.mark.docker
def test_image_listing_works() -> None:
    """The image half of the refusal check must be able to see images at all."""
    assert experiment_images() is not None



@pytest.mark.parametrize("forge", ["nan-value", "int-zero-value", "negative-batch", "other-run", "huge-steps"])
def test_forged_cache_entry_is_ignored(tmp_path: Path, forge: str) -> None:
    """A cache entry whose key matches but whose numbers are impossible is not used for a verdict."""
    import numpy as np

    parent, exp = make_world(tmp_path, "tiny")
    exp2 = parent / "kaggle_two"
    _results(exp2, candidates=2)
    first = CliRunner().invoke(cli, ["compare", str(exp2), "--no-plots", "--format", "json"])
    assert first.exit_code == 0, first.output
    entries = sorted((exp2 / "results" / "comparison" / ".cache" / "optimization").glob("*.npz"))
    assert len(entries) == 2
    with np.load(entries[0], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    if forge == "nan-value":
        meta["values"]["throughput"] = float("nan")
    elif forge == "int-zero-value":  # found by tests/test_loaders_fuzz.py: the writer only ever writes floats
        meta["values"]["throughput"] = 0
    elif forge == "negative-batch":
        arrays["batch_dt"] = -arrays["batch_dt"]
    elif forge == "other-run":
        meta["run_id"] = "../../../outside"
    else:
        meta["steps"]["warmup_batches"] = 1.5
    with open(entries[0], "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta, allow_nan=True)), **arrays)
    again = CliRunner().invoke(cli, ["compare", str(exp2), "--no-plots", "--format", "json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["comparison"] == json.loads(first.stdout)["comparison"]


def test_forged_columnar_twin_cannot_bring_impossible_numbers(tmp_path: Path) -> None:
    """The twin beside results.json (harness/results/columnar.py) is held to the same number rules."""
    import numpy as np

    from harness.results import columnar

    parent, exp = make_world(tmp_path, "tiny")
    exp2 = parent / "kaggle_two"
    _results(exp2, candidates=2)
    first = sorted((exp2 / "results" / "optimization").iterdir())[0]
    twin = columnar.write(first)
    honest = CliRunner().invoke(cli, ["compare", str(exp2), "--no-plots", "--format", "json"])
    assert honest.exit_code == 0, honest.output
    shutil.rmtree(exp2 / "results" / "comparison")  # no cached reduction: the twin is read again
    with np.load(twin, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    names = [str(n) for n in arrays["__names__"]]
    key = f"a{names.index('optimization/batch_times')}"
    arrays[key] = arrays[key].astype(float)
    arrays[key][3, 1] = np.nan
    with open(twin, "wb") as f:
        np.savez(f, **arrays)
    result = CliRunner().invoke(cli, ["compare", str(exp2), "--no-plots", "--format", "json"])
    assert result.exit_code == 0, result.output
    # The forged twin is refused and results.json itself is read: the verdict is the honest one.
    assert json.loads(result.stdout)["comparison"] == json.loads(honest.stdout)["comparison"]


def test_state_model_knows_every_field_a_plan_writes() -> None:
    """A field added to Plan or PlannedRun must be added to the state.json model too, or --resume refuses it."""
    from dataclasses import fields

    from harness.plan.model import Plan, PlannedRun
    from harness.plan.state_model import PlanState, RunState

    assert {f.name for f in fields(Plan)} == set(PlanState.model_fields)
    assert {f.name for f in fields(PlannedRun)} == set(RunState.model_fields)
