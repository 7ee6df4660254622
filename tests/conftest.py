"""Shared fixtures: an isolated HOME, the docker marker policy, and quick experiments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

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


# --------------------------------------------------------------------------- containers (Docker engineer)
WHEELHOUSE = Path(os.environ.get("HARNESS_TEST_WHEELHOUSE", "/opt/wheels"))
CA_BUNDLE = Path(os.environ.get("HARNESS_TEST_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))


def build_test_framework_image(framework: str) -> str:
    """Build (or find cached) harness/<framework>:<version> the way CI does: bootstrap base, local wheels.

    The first build of a session takes minutes; with nothing changed it is a cache hit in seconds.
    """
    from harness.images import build_framework_images

    (tag,) = build_framework_images(
        frameworks=[framework], bootstrap=True,
        wheelhouse=WHEELHOUSE if WHEELHOUSE.is_dir() else None,
        ca_bundle=CA_BUNDLE if CA_BUNDLE.is_file() else None,
        network="host", echo=lambda _: None)
    return tag


@pytest.fixture(scope="session")
def pytorch_image() -> str:
    """The PyTorch framework image, built once per test session."""
    return build_test_framework_image("pytorch")


@pytest.fixture(scope="session")
def tensorflow_image() -> str:
    """The TensorFlow framework image, built once per test session."""
    return build_test_framework_image("tensorflow")


def write_tiny_experiment(path: Path, scripts: dict[str, str], *, name: str = "tiny",
                          framework: str = "pytorch", **config: object) -> Path:
    """A hand-made experiment folder: experiment_config.json plus small mode scripts (source text)."""
    from harness.config import ExperimentConfig, config_to_json

    path.mkdir(parents=True, exist_ok=True)
    cfg = ExperimentConfig(competition=name, kaggle_slug=name, framework=framework, seeds=[0],
                           modes={mode: f"{mode}.py" for mode in scripts}, sampling_interval=0.25, **config)
    (path / "experiment_config.json").write_text(config_to_json(cfg))
    for mode, source in scripts.items():
        (path / f"{mode}.py").write_text(source)
    return path


@pytest.fixture
def tiny_experiment(tmp_path: Path) -> Iterator[Callable[..., "Experiment"]]:
    """Factory: ``tiny_experiment({"baseline": "print('hi')"}, name=..., **config) -> Experiment``."""
    from harness.experiment import Experiment, load_experiment

    names: list[str] = []

    def factory(scripts: dict[str, str], *, name: str = "tiny", **config: object) -> Experiment:
        names.append(name)
        return load_experiment(write_tiny_experiment(tmp_path / f"exp_{name}", scripts, name=name, **config))

    yield factory
    _remove_experiment_images(names)


def _remove_experiment_images(names: list[str]) -> None:
    """Experiment images that tests built (harness-<name>:<hash>) go when the test ends."""
    if not names or not _engine_answers():
        return
    import docker

    client = docker.from_env()
    for name in set(names):
        for image in client.images.list(filters={"label": f"harness.experiment={name}"}):
            for tag in image.tags:
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.APIError:
                    pass  # in use by a container another test still holds: harmless
    client.close()


def start_harness_until_ready(args: list[str], marker: str = "SCRIPT-READY") -> subprocess.Popen[str]:
    """Start ``harness ARGS`` as a real process and return it once the mode's script prints MARKER."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.strip() == marker:
            return proc
    pytest.fail("the run never started: " + "".join(seen))
