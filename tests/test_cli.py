"""The CLI layer: help for every command, the one error boundary, broken configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harness.cli import cli

VALID = {
    "competition": "birdclef_2023",
    "kaggle_slug": "birdclef-2023",
    "framework": "pytorch",
}


def _commands(group: click.Group) -> list[str]:
    return sorted(group.commands)


@pytest.mark.parametrize("command", _commands(cli))
def test_every_command_has_help_with_text(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: harness {command}" in result.output
    doc = cli.commands[command].help or ""
    assert len(doc.split()) >= 6, f"{command} needs a docstring that teaches"


def test_top_level_help_lists_workflow() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for word in ("harness new", "harness run", "harness compare"):
        assert word in result.output


def test_version() -> None:
    from harness import __version__

    result = CliRunner().invoke(cli, ["--version"])
    assert result.output.strip() == f"harness, version {__version__}"


def test_outside_an_experiment_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "baseline"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: not inside an experiment folder")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.output


def test_run_without_modes_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "experiment_config.json").write_text(json.dumps(VALID))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: name at least one mode")


@pytest.mark.parametrize("seeds", ["a,b", "1,1", "-1", ","])
def test_bad_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seeds: str) -> None:
    (tmp_path / "experiment_config.json").write_text(json.dumps(VALID))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "baseline", "--seeds", seeds])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --seeds must")
    assert len(result.stderr.strip().splitlines()) == 1


def _with(**changes: object) -> str:
    data: dict = json.loads(json.dumps(VALID))
    for dotted, value in changes.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return json.dumps(data)


_DELETE = object()

BROKEN_CONFIGS = [
    ("not json", "{ this is not json", "experiment_config.json: not valid JSON: "),
    ("cut short", json.dumps(VALID)[:-7], "experiment_config.json: not valid JSON: "),
    ("empty file", "", "experiment_config.json: not valid JSON: "),
    ("top-level list", "[1, 2]", "experiment_config.json: must hold a JSON object, not list"),
    ("negative cpus", _with(resources__cpus=-1), "experiment_config.json: resources.cpus: must be > 0 (got -1)"),
    ("unknown framework", _with(framework="jax"), "experiment_config.json: framework: "),
    ("unknown key", _with(epohcs=3), "experiment_config.json: epohcs: unknown field"),
    ("missing slug", _with(kaggle_slug=_DELETE), "experiment_config.json: kaggle_slug: is required"),
    ("zero epochs", _with(epochs=0), "experiment_config.json: epochs: must be > 0 (got 0)"),
    ("epochs as text", _with(epochs="two"), "experiment_config.json: epochs: "),
    ("bad memory size", _with(resources__memory="lots"), "experiment_config.json: resources.memory: not a size"),
    ("bad gpus", _with(resources__gpus="some"), "experiment_config.json: resources.gpus: must be 'auto', 'all'"),
    ("repeated seeds", _with(seeds=[1, 1]), "experiment_config.json: seeds: must not repeat a seed"),
    ("no seeds", _with(seeds=[]), "experiment_config.json: seeds: must list at least one seed"),
    ("script outside", _with(modes={"baseline": "../evil.py"}), "experiment_config.json: modes.baseline: script"),
    ("bad mode name", _with(modes={"Base Line": "b.py"}), "experiment_config.json: modes: 'Base Line'"),
    ("tiny interval", _with(sampling_interval=0.0001), "experiment_config.json: sampling_interval: must be"),
    ("absolute data dir", _with(data_dir="/etc"), "experiment_config.json: data_dir: must be a folder inside"),
    ("newer schema", _with(schema_version=99), "experiment_config.json: schema_version: is 99, newer"),
    ("bad network", _with(network="wifi"), "experiment_config.json: network: "),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in BROKEN_CONFIGS],
                         ids=[name for name, _, _ in BROKEN_CONFIGS])
def test_broken_config_is_one_line_exit_2_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    exp = tmp_path / "kaggle_x"
    exp.mkdir()
    (exp / "experiment_config.json").write_text(text)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.chdir(exp)
    result = CliRunner().invoke(cli, ["run", "baseline", "--dry-run"])
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: {expected}"), first
    assert "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if not line.startswith("hint:")]) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_real_process_error_has_no_traceback(tmp_path: Path) -> None:
    """Through the installed console script, not CliRunner: what a user sees."""
    proc = subprocess.run([sys.executable, "-m", "harness", "compare"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: not inside an experiment folder")
    assert "Traceback" not in proc.stderr


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; from harness.cli import main; sys.argv=['harness','--help']\n"
            "try:\n main()\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('torch','tensorflow','matplotlib','docker','ray','scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("args,expected", [
    (["--gpus", "some"], "Error: --gpus: must be 'auto', 'all', 'none'"),
    (["--memory", "lots"], "Error: --memory: not a size like 512m or 8g"),
    (["--shm-size", "0"], "Error: --shm-size: "),
    (["--cpus", "-2"], "Error: --cpus: must be > 0 (got -2)"),
    (["--timeout", "0"], "Error: --timeout: must be > 0 seconds (got 0)"),
])
def test_bad_run_flags_are_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str) -> None:
    (tmp_path / "experiment_config.json").write_text(json.dumps(VALID))
    (tmp_path / "baseline.py").write_text("print('never runs')\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "baseline", "--backend", "local", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(expected), result.stderr
    assert not (tmp_path / "results").exists()


def test_without_the_host_extra_the_command_says_how_to_install() -> None:
    """A plain `pip install harness` is the in-container core: the command names the missing extra."""
    import subprocess
    import sys

    code = "import sys; sys.modules['click'] = None\nfrom harness.entry import main\nmain()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("Error: the harness command needs click, part of the CLI's dependencies\n"
                           "hint: pip install 'harness[host]'\n")
