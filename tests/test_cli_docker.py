"""The container commands end to end through the CLI: new, build, setup, run (both frameworks), ps, clean."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness import __version__
from harness.cli import cli

from conftest import CA_BUNDLE, WHEELHOUSE, _remove_experiment_images, write_tiny_experiment

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True, scope="module")
def _remove_images_afterwards():
    yield
    _remove_experiment_images(["cpye2e", "ctee2e", "ccligpu"])


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_build_with_nothing_changed_is_a_cache_hit(pytorch_image):
    args = ["build", "--framework", "pytorch", "--bootstrap", "--build-network", "host"]
    if WHEELHOUSE.is_dir():
        args += ["--wheelhouse", str(WHEELHOUSE)]
    if CA_BUNDLE.is_file():
        args += ["--ca-bundle", str(CA_BUNDLE)]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Using cache" in result.output
    assert result.output.rstrip().endswith(f"Built harness/pytorch:{__version__}")


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_new_setup_and_run_both_modes_in_containers(framework, request, make_experiment):
    request.getfixturevalue(f"{framework}_image")
    path = make_experiment(name=f"c{framework[:2]}e2e", framework=framework)
    result = _invoke("setup", "-e", str(path))
    assert result.exit_code == 0, result.output
    assert f"Image harness-c{framework[:2]}e2e:" in result.output
    result = _invoke("run", "baseline", "optimization", "--backend", "docker", "-e", str(path))
    assert result.exit_code == 0, result.output
    for mode in ("baseline", "optimization"):
        (run_dir,) = (path / "results" / mode).iterdir()
        data = json.loads((run_dir / "results.json").read_text())
        assert data["run"]["status"] == "completed", (run_dir / "stdout.log").read_text()[-2000:]
        assert data["run"]["backend"] == "docker"
        assert data["run"]["image"].startswith(f"harness-c{framework[:2]}e2e:")
        assert data["environment"]["framework"]["name"] in ("torch", "tensorflow")
        mode_data = data["modes"][mode]
        assert mode_data["summary"]["num_batches"] > 0
        assert mode_data["resource_usage"]["cpu_usage"], "the agent sampled the container's CPU"


def test_gpus_all_is_one_line_error_and_leaves_nothing(pytorch_image, tmp_path):
    path = write_tiny_experiment(tmp_path / "exp", {"baseline": "print('never')\n"}, name="ccligpu")
    result = CliRunner().invoke(cli, ["run", "baseline", "--backend", "docker", "--gpus", "all", "-e", str(path)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith(("Error:", "hint:"))]
    assert errors[0] == ("Error: GPUs were asked for, but this Docker engine has no NVIDIA runtime or CDI "
                         "to give them to a container")
    assert errors[1].startswith("hint: install the NVIDIA Container Toolkit")
    assert "Traceback" not in result.output
    ps = _invoke("ps", "--all")
    assert "ccligpu" not in ps.output


def test_ps_and_clean_commands(pytorch_image):
    import docker

    client = docker.from_env()
    leftover = client.containers.create(pytorch_image, ["true"], labels={
        "harness": "1", "harness.experiment": "ccliclean", "harness.mode": "baseline",
        "harness.run_id": "20990101T000000-s0-cli0"})
    try:
        assert "ccliclean" not in _invoke("ps").output  # not running
        listed = _invoke("ps", "--all").output
        assert "ccliclean" in listed and "20990101T000000-s0-cli0" in listed
        result = _invoke("clean", "--yes")
        assert result.exit_code == 0 and "Removed" in result.output
        assert "ccliclean" not in _invoke("ps", "--all").output
    finally:
        try:
            leftover.remove(force=True)
        except docker.errors.NotFound:
            pass
        client.close()
