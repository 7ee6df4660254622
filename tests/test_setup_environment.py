"""setup_environment.sh: `demo` brings up the engine exactly as `test` does, and says loudly when it cannot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, shrink_config

SCRIPT = REPO / "setup_environment.sh"


def function_body(source: str, name: str) -> str:
    """The text of a top-level bash function ``name() { ... }`` (up to its closing brace in column 0)."""
    match = re.search(rf"^{name}\(\) \{{\n(.*?)^\}}$", source, flags=re.MULTILINE | re.DOTALL)
    assert match, f"setup_environment.sh has no function {name}()"
    return match.group(1)


def test_demo_and_test_share_one_engine_bring_up() -> None:
    source = SCRIPT.read_text()
    # One place installs docker.io and one place starts dockerd ...
    assert len(re.findall(r"apt-get install -y -qq docker\.io", source)) == 1
    assert len(re.findall(r"nohup dockerd ", source)) == 1
    assert "apt-get install -y -qq docker.io" in function_body(source, "ensure_engine")
    assert "nohup dockerd " in function_body(source, "start_engine")
    bring_up = function_body(source, "bring_up_engine")
    assert "ensure_engine" in bring_up and "build_images" in bring_up
    # ... and both commands reach them through the same function, not a copy of their own.
    for command in ("cmd_demo", "cmd_test"):
        body = function_body(source, command)
        assert re.search(r"\bbring_up_engine (pytorch|all)\b", body), command
        code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("echo "))
        for private in ("ensure_engine", "start_engine", "nohup dockerd", "apt-get", "docker_answers",
                        "build_images"):
            assert private not in code, f"{command} calls {private} itself"


def run_demo(root: Path, *args: str, docker_host: str) -> subprocess.CompletedProcess[str]:
    """The real script, copied into ``root`` so its demo experiment lives there, with this venv."""
    shutil.copy(SCRIPT, root / "setup_environment.sh")
    env = {**os.environ, "HARNESS_VENV": sys.prefix, "DOCKER_HOST": docker_host,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    return subprocess.run(["bash", str(root / "setup_environment.sh"), "demo", *args], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def small_demo_experiment(root: Path) -> Path:
    """The demo's experiment, made ahead (the demo reuses it) and shrunk so the runs take seconds."""
    from harness.scaffold import create_experiment

    path = create_experiment(name="demo_birdclef", framework="pytorch", root=root / "experiments")
    shrink_config(path)
    return path


def test_demo_without_an_engine_says_so_loudly_at_start_and_end(tmp_path: Path) -> None:
    exp = small_demo_experiment(tmp_path)
    dead = f"unix://{tmp_path}/dead.sock"
    proc = run_demo(tmp_path, docker_host=dead)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    reason = f"because DOCKER_HOST={dead} does not answer"
    fix = "fix: start the engine it names, or `unset DOCKER_HOST` to use this machine's own"

    first_run = out.index("[1/2] baseline seed 0: started")
    start_notice = out.index("!!! NO DOCKER ENGINE: the demo will run as local processes, with no container isolation")
    assert start_notice < first_run
    assert reason in out[start_notice:first_run] and fix in out[start_notice:first_run]

    plan_done = out.index("2 completed of 2 runs")
    end_notice = out.index("!!! the demo ran as local processes: no container isolation, "
                           f"{reason}; {fix}")
    assert end_notice > plan_done
    # The runs themselves were local processes, and the demo still produced its report.
    assert len(re.findall(r"^\[(baseline|optimization) seed=0\] local process \d+", out, re.MULTILINE)) == 2
    assert (exp / "results" / "comparison" / "report.html").is_file()


def test_demo_with_backend_docker_and_no_engine_fails_with_reason_and_fix(tmp_path: Path) -> None:
    exp = small_demo_experiment(tmp_path)
    dead = f"unix://{tmp_path}/dead.sock"
    proc = run_demo(tmp_path, "--backend", "docker", docker_host=dead)
    assert proc.returncode == 1
    assert f"Error: no Docker engine: DOCKER_HOST={dead} does not answer\n" in proc.stdout
    assert "hint: start the engine it names, or `unset DOCKER_HOST`" in proc.stdout
    assert not (exp / "results").exists()  # nothing ran


def test_demo_rejects_an_unknown_backend(tmp_path: Path) -> None:
    proc = run_demo(tmp_path, "--backend", "podman", docker_host=f"unix://{tmp_path}/dead.sock")
    assert proc.returncode == 2
    assert "demo: --backend must be auto, docker or local (got 'podman')" in proc.stdout


def test_demo_help_says_what_it_installs() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "demo", "-h"], stdout=subprocess.PIPE, text=True, check=True)
    assert "install docker.io when dockerd is" in proc.stdout
    assert "the demo says so, with the reason and the fix" in proc.stdout
