"""harness new: names, no overwrites, atomic --force, the rendered files, and the kept example."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import scaffold
from harness.cli import cli
from harness.config import load_config
from harness.errors import ScaffoldError, UsageError
from harness.package_data import templates_dir
from harness.scaffold import create_experiment

REPO = Path(__file__).resolve().parent.parent
EXPECTED_FILES = {"experiment_config.json", "requirements.txt", "baseline.py", "optimization.py",
                  "Dockerfile", ".dockerignore", ".gitignore", "README.md"}

BAD_NAMES = [
    "../x", "a b", "Ü", "", "a" * 200, "a" * 65, "-rf", "_x", "Birdclef", "bird.clef", "bird/clef",
    "bird\\clef", "kaggle_", "kaggle__x", "kaggle_-x", "x\n", "ｂird", "bird$", "~/x", ".", "..",
]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_name_exits_2_with_one_line_and_writes_nothing(name: str, tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    result = CliRunner().invoke(cli, ["new", "--root", str(root), "--", name])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: invalid experiment name"), result.stderr
    assert "Traceback" not in result.output
    assert not root.exists()
    assert tree(tmp_path) == []


def test_dash_name_without_separator_is_a_click_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new", "--root", str(tmp_path / "e"), "-rf"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("name,folder,competition", [
    ("birdclef_2023", "kaggle_birdclef_2023", "birdclef_2023"),
    ("kaggle_birdclef_2023", "kaggle_birdclef_2023", "birdclef_2023"),
    ("rsna-2024", "kaggle_rsna-2024", "rsna-2024"),
    ("kaggle", "kaggle_kaggle", "kaggle"),
    ("9" * 64, "kaggle_" + "9" * 64, "9" * 64),
])
def test_good_names(name: str, folder: str, competition: str, tmp_path: Path) -> None:
    path = create_experiment(name, "pytorch", root=tmp_path)
    assert path == tmp_path / folder
    assert {p.name for p in path.iterdir()} == EXPECTED_FILES
    config = load_config(path / "experiment_config.json")
    assert config.competition == competition
    assert config.kaggle_slug == competition.replace("_", "-")
    assert [p.name for p in tmp_path.iterdir()] == [folder]  # no staging folder left behind


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_rendered_files(framework: str, tmp_path: Path) -> None:
    path = create_experiment("birdclef_2023", framework, root=tmp_path / "deep" / "root")
    config = load_config(path / "experiment_config.json")
    assert config.framework == framework
    assert config.modes == {"baseline": "baseline.py", "optimization": "optimization.py"}
    assert config.parameters["num_workers"] == 0
    for name in EXPECTED_FILES:
        text = (path / name).read_text()
        assert "{{" not in text and "{%" not in text, name
    dockerfile = (path / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE=harness/{framework}:" in dockerfile
    assert "FROM ${BASE_IMAGE}" in dockerfile and "WORKDIR /workspace" in dockerfile
    assert "data/" in (path / ".gitignore").read_text().split()
    assert "results/" in (path / ".dockerignore").read_text().split()
    for script in ("baseline.py", "optimization.py"):
        compile((path / script).read_text(), script, "exec")
    assert "import baseline" in (path / "optimization.py").read_text()
    assert (path.stat().st_mode & 0o777) != 0o700


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    path = create_experiment("demo", "pytorch", root=tmp_path)
    (path / "baseline.py").write_text("# mine\n")
    before = tree(tmp_path)
    result = CliRunner().invoke(cli, ["new", "demo", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {path} already exists (a folder); nothing was written",
        "hint: pass --force to regenerate its code (the old folder is kept aside)",
    ]
    assert (path / "baseline.py").read_text() == "# mine\n"
    assert tree(tmp_path) == before


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "kaggle_demo").write_text("notes")
    with pytest.raises(ScaffoldError, match="already exists"):
        create_experiment("demo", "pytorch", root=tmp_path)
    assert (tmp_path / "kaggle_demo").read_text() == "notes"


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "root").write_text("x")
    with pytest.raises(ScaffoldError, match="is not a folder"):
        create_experiment("demo", "pytorch", root=tmp_path / "root")


def test_force_regenerates_code_and_keeps_data_and_results(tmp_path: Path) -> None:
    path = create_experiment("demo", "pytorch", root=tmp_path)
    (path / "baseline.py").write_text("# edited\n")
    (path / "data").mkdir()
    (path / "data" / "train_metadata.csv").write_text("primary_label,filename\n")
    (path / "results" / "baseline").mkdir(parents=True)
    (path / "results" / "baseline" / "r.json").write_text("{}")
    (path / "stray.txt").write_text("gone")
    result = CliRunner().invoke(cli, ["new", "demo", "--root", str(tmp_path), "--force", "-f", "tensorflow"])
    assert result.exit_code == 0, result.output
    assert "import tensorflow" in (path / "baseline.py").read_text()
    assert (path / "data" / "train_metadata.csv").read_text() == "primary_label,filename\n"
    assert (path / "results" / "baseline" / "r.json").read_text() == "{}"
    assert not (path / "stray.txt").exists()
    (aside,) = [p for p in tmp_path.iterdir() if p.name != "kaggle_demo"]
    assert aside.name.startswith("kaggle_demo.bak-") and f"Moved the old folder to {aside}" in result.stdout
    assert (aside / "stray.txt").read_text() == "gone" and (aside / "baseline.py").read_text() == "# edited\n"


def test_force_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "kaggle_demo").write_text("notes")
    with pytest.raises(ScaffoldError, match="is not a harness experiment"):
        create_experiment("demo", "pytorch", root=tmp_path, force=True)
    assert (tmp_path / "kaggle_demo").read_text() == "notes"
    assert [p.name for p in tmp_path.iterdir()] == ["kaggle_demo"]


def _broken_templates(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(templates_dir(), copy)
    (copy / "common" / "README.md.j2").write_text("{{ no_such_variable }}\n")
    return copy


def test_template_error_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaffold, "templates_dir", lambda: _broken_templates(tmp_path))
    root = tmp_path / "a" / "b"
    with pytest.raises(ScaffoldError, match="no_such_variable"):
        create_experiment("demo", "pytorch", root=root)
    assert not (tmp_path / "a").exists()


def test_template_error_with_force_keeps_the_old_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "experiments"
    path = create_experiment("demo", "pytorch", root=root)
    (path / "baseline.py").write_text("# mine\n")
    before = tree(root)
    monkeypatch.setattr(scaffold, "templates_dir", lambda: _broken_templates(tmp_path))
    with pytest.raises(ScaffoldError):
        create_experiment("demo", "pytorch", root=root, force=True)
    assert tree(root) == before
    assert (path / "baseline.py").read_text() == "# mine\n"


def test_unknown_framework() -> None:
    with pytest.raises(UsageError, match="unknown framework"):
        create_experiment("demo", "jax", root=Path("/nonexistent-should-not-be-created"))


def test_kept_example_matches_the_templates(tmp_path: Path) -> None:
    """experiments/kaggle_birdclef_2023 is what `harness new` writes today; regenerate it when this fails:
    harness new birdclef_2023 --framework pytorch --root experiments --force  (then delete the .bak- folder)"""
    kept = REPO / "experiments" / "kaggle_birdclef_2023"
    fresh = create_experiment("birdclef_2023", "pytorch", root=tmp_path)
    ignore = {"data", "results", "__pycache__"}
    kept_files = sorted(p.name for p in kept.iterdir() if p.name not in ignore)
    assert kept_files == sorted(p.name for p in fresh.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(kept, fresh, kept_files, shallow=False)
    assert not mismatch and not errors, (
        f"{kept} drifted from templates/ in {mismatch + errors}; regenerate it with "
        "`harness new birdclef_2023 --framework pytorch --root experiments --force`")
    assert json.loads((kept / "experiment_config.json").read_text())["framework"] == "pytorch"
