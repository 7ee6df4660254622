"""Framework and experiment images, built for real on the engine (cached between runs)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from harness import __version__
from harness.errors import ImageBuildError
from harness.images import (
    BOOTSTRAP_TAG,
    assemble_framework_context,
    bootstrap_base_image,
    build_framework_images,
    build_harness_wheel,
    docker_client,
    ensure_experiment_image,
    experiment_context_files,
    experiment_hash,
)

from conftest import CA_BUNDLE, WHEELHOUSE, build_test_framework_image


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_harness_wheel_is_reproducible(tmp_path, monkeypatch):
    import harness.image_context

    monkeypatch.setattr(harness.image_context, "_WHEEL_MEMO", {})
    first = build_harness_wheel(tmp_path / "a")
    harness.image_context._WHEEL_MEMO.clear()  # build it again for real, not from this process's memo
    second = build_harness_wheel(tmp_path / "b")
    assert first.stat().st_ino != second.stat().st_ino
    assert first.name == second.name == f"harness-{__version__}-py3-none-any.whl"
    assert _sha(first) == _sha(second), "an unchanged checkout must give the same bytes (build cache)"


def test_wheel_in_wheelhouse_wins(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    fake = house / f"harness-{__version__}-py3-none-any.whl"
    fake.write_bytes(b"not really a wheel")
    assert build_harness_wheel(tmp_path / "out", house).read_bytes() == b"not really a wheel"


def test_context_holds_only_the_wheels_the_framework_needs(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    for name in ("torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl", "tensorflow_cpu-2.17.0-cp311-none-any.whl",
                 "numpy-2.0.0-cp311-none-any.whl"):
        (house / name).write_bytes(b"x")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for framework, wanted in (("pytorch", ["torch"]), ("tensorflow", ["tensorflow_cpu"])):
        ctx = tmp_path / framework
        ctx.mkdir()
        assemble_framework_context(ctx, framework, wheelhouse=house, ca_bundle=ca)
        assert [p.name.split("-")[0] for p in (ctx / "wheelhouse").glob("*.whl")] == wanted
        assert (ctx / "ca" / "ca-bundle.crt").read_text() == ca.read_text()
        requirements = (ctx / "requirements.txt").read_text()
        assert "psutil" in requirements and "click" not in requirements  # the core only: no host side
        assert [p.name for p in (ctx / "dist").iterdir()] == [f"harness-{__version__}-py3-none-any.whl"]
        dockerfile = (ctx / "Dockerfile").read_text()
        assert "ARG BASE_IMAGE=" in dockerfile and "--mount" not in dockerfile and "# syntax" not in dockerfile
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in (tmp_path / "tensorflow" / "Dockerfile").read_text()


def test_experiment_context_skips_data_results_and_ignored(tiny_experiment):
    exp = tiny_experiment({"baseline": "print(1)\n"}, name="cctx")
    (exp.path / "data").mkdir()
    (exp.path / "data" / "big.bin").write_bytes(b"0" * 1000)
    (exp.path / "results" / "baseline").mkdir(parents=True)
    (exp.path / "results" / "baseline" / "r.json").write_text("{}")
    (exp.path / "notes.tmp").write_text("x")
    (exp.path / ".dockerignore").write_text("*.tmp\n")
    (exp.path / "pkg").mkdir()
    (exp.path / "pkg" / "util.py").write_text("X = 1\n")
    files = experiment_context_files(exp)
    assert files == [".dockerignore", "baseline.py", "experiment_config.json", "pkg/util.py"]
    before = experiment_hash(exp, "sha256:base")
    (exp.path / "data" / "big.bin").write_bytes(b"1" * 1000)  # data never changes the image
    assert experiment_hash(exp, "sha256:base") == before
    (exp.path / "pkg" / "util.py").write_text("X = 2\n")
    assert experiment_hash(exp, "sha256:base") != before
    assert experiment_hash(exp, "sha256:other") != experiment_hash(exp, "sha256:base")


@pytest.mark.docker
def test_bootstrap_base_has_python_and_is_not_remade(pytorch_image):
    lines: list[str] = []
    assert bootstrap_base_image(echo=lines.append) == BOOTSTRAP_TAG
    assert lines == [f"Base image {BOOTSTRAP_TAG} exists; not bootstrapping again (--no-cache remakes it)"]
    client = docker_client()
    out = client.containers.run(BOOTSTRAP_TAG, ["python3", "-c", "import venv, ssl; print('py ok')"], remove=True)
    assert out.strip() == b"py ok"


@pytest.mark.docker
def test_framework_image_has_torch_harness_labels_and_rebuild_is_cached(pytorch_image):
    client = docker_client()
    image = client.images.get(pytorch_image)
    labels = image.labels
    assert labels["harness.version"] == __version__
    assert labels["harness.framework"] == "pytorch"
    assert labels["harness.git_commit"] and labels["harness.build_date"]
    from harness.image_context import _source_hash
    from harness.package_data import repo_root

    assert labels["harness.source_hash"] == _source_hash(repo_root())[:16]
    out = client.containers.run(pytorch_image, ["python3", "-c",
                                "import torch, harness.agent; print(torch.__version__, harness.__version__)"],
                                remove=True, network_mode="none")
    assert out.decode().split()[1] == __version__
    start = time.monotonic()
    assert build_test_framework_image("pytorch") == pytorch_image
    elapsed = time.monotonic() - start
    assert client.images.get(pytorch_image).id == image.id, "nothing changed: the rebuild must be a cache hit"
    assert elapsed < 60, f"a cached rebuild took {elapsed:.0f} s"


@pytest.mark.docker
def test_tensorflow_image_has_tensorflow_and_allow_growth(tensorflow_image):
    client = docker_client()
    out = client.containers.run(tensorflow_image, ["python3", "-c",
                                "import os, tensorflow as tf; print(tf.__version__, os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])"],
                                remove=True, network_mode="none", environment={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.decode().split()[-1] == "true"


@pytest.mark.docker
def test_missing_base_image_fails_with_the_engine_message_and_a_hint(tmp_path):
    lines: list[str] = []
    with pytest.raises(ImageBuildError) as err:
        build_framework_images(frameworks=["pytorch"], base_image="harness-test/does-not-exist:0",
                               wheelhouse=WHEELHOUSE if WHEELHOUSE.is_dir() else None,
                               ca_bundle=CA_BUNDLE if CA_BUNDLE.is_file() else None, echo=lines.append)
    assert str(err.value).startswith(f"building harness/pytorch:{__version__} failed:")
    assert "does-not-exist" in str(err.value)
    assert err.value.hint and "--bootstrap" in err.value.hint


@pytest.mark.docker
def test_experiment_image_is_built_once_per_content(pytorch_image, tiny_experiment):
    exp = tiny_experiment({"baseline": "print('v1')\n"}, name="cimage")
    lines: list[str] = []
    tag = ensure_experiment_image(exp, echo=lines.append)
    assert tag.startswith("harness-cimage:") and lines
    lines.clear()
    assert ensure_experiment_image(exp, echo=lines.append) == tag and lines == []  # up to date: no build
    (exp.path / "baseline.py").write_text("print('v2')\n")
    tag2 = ensure_experiment_image(exp, echo=lines.append)
    assert tag2 != tag
    client = docker_client()
    out = client.containers.run(tag2, ["python3", "baseline.py"], remove=True, network_mode="none")
    assert out.strip() == b"v2"
    assert client.images.get(tag2).labels["harness.experiment"] == "cimage"
    for t in (tag, tag2):
        client.images.remove(t, force=True)


@pytest.mark.docker
def test_experiment_image_without_framework_image_says_build_it(tiny_experiment):
    exp = tiny_experiment({"baseline": "print(1)\n"}, name="cnobase", base_image="harness-test/no-such-base:1")
    with pytest.raises(ImageBuildError) as err:
        ensure_experiment_image(exp, echo=lambda _: None)
    assert "harness-test/no-such-base:1 is not built" in str(err.value)
    assert "harness build --framework pytorch" in (err.value.hint or "")


def test_notes_log_keeps_the_image_tag_and_a_code_edit_changes_it(tiny_experiment):
    """Issue 17: a log written into the folder between two runs is not code; baseline.py is."""
    exp = tiny_experiment({"baseline": "print(1)\n"}, name="ctag")
    tag = experiment_hash(exp, "sha256:base")[:12]
    (exp.path / "notes.log").write_text("epoch 1: loss 0.3\n")
    (exp.path / "outputs").mkdir()
    (exp.path / "outputs" / "pred.csv").write_text("1\n")
    assert experiment_hash(exp, "sha256:base")[:12] == tag
    assert "notes.log" not in experiment_context_files(exp)
    (exp.path / "baseline.py").write_text("print(2)\n")
    assert experiment_hash(exp, "sha256:base")[:12] != tag
