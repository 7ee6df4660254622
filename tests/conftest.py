"""Shared fixtures: an isolated HOME, the docker marker policy, and quick experiments."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolate_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's HOME and from HARNESS_* variables of the calling shell."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("HARNESS_") and key != "HARNESS_REQUIRE_DOCKER":
            monkeypatch.delenv(key)
    monkeypatch.setenv("MPLBACKEND", "Agg")


def docker_required() -> bool:
    return os.environ.get("HARNESS_REQUIRE_DOCKER") == "1"


def _engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.docker`` tests skip on a laptop without an engine, but fail in CI."""
    if not any(item.get_closest_marker("docker") for item in items):
        return
    if _engine_answers():
        return
    if docker_required():
        return  # let them run and fail loudly: CI promised an engine
    skip = pytest.mark.skip(reason="no Docker engine answers (set HARNESS_REQUIRE_DOCKER=1 to fail instead)")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)


def shrink_config(path: Path, **overrides: object) -> None:
    """Make a scaffolded experiment quick: 1 epoch, few clips, one seed unless told otherwise."""
    cfg_path = path / "experiment_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["epochs"] = 1
    cfg["seeds"] = [0]
    cfg.setdefault("parameters", {})
    cfg["parameters"]["num_clips"] = 96
    for key, value in overrides.items():
        if key == "parameters":
            cfg["parameters"].update(value)  # type: ignore[arg-type]
        else:
            cfg[key] = value
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


@pytest.fixture
def make_experiment(tmp_path: Path) -> Callable[..., Path]:
    """Scaffold a real experiment in tmp_path and shrink it so one run takes seconds."""

    def factory(name: str = "demo", framework: str = "pytorch", **overrides: object) -> Path:
        from harness.scaffold import create_experiment

        path = create_experiment(name=name, framework=framework, root=tmp_path / "experiments")
        shrink_config(path, **overrides)
        return path

    return factory


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
