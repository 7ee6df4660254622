"""Helpers for tests that drive ``harness run`` as a real process and look at what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

RUN_TIMEOUT = 600  # seconds: a hung harness fails the test instead of hanging the suite


def write_experiment(root: Path, scripts: dict[str, str], *, name: str, seeds: list[int] | None = None,
                     files: dict[str, str] | None = None, **config: object) -> Path:
    """A tiny experiment folder: config, mode scripts, and any extra files (a Dockerfile, a planter)."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"competition": name, "kaggle_slug": name, "framework": "pytorch",
           "modes": {m: f"{m}.py" for m in scripts}, "seeds": seeds or [0],
           "sampling_interval": 0.2, "resources": {"memory": None}, **config}
    (root / "experiment_config.json").write_text(json.dumps(cfg, indent=2))
    for mode, body in scripts.items():
        (root / f"{mode}.py").write_text(body)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def harness(args: list[str], *, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m harness ARGS`` as a real process; output is stdout and stderr together."""
    return subprocess.run([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env, cwd=cwd)


def start_harness(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def plan_state(experiment: Path) -> dict[str, Any]:
    """The (only) plan's state.json, or {} before it exists."""
    paths = sorted((experiment / "results" / "plans").glob("*/state.json"))
    if not paths:
        return {}
    try:
        return json.loads(paths[-1].read_text())
    except ValueError:  # caught between two writes of a non-atomic writer would be a bug elsewhere
        return {}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def results_of(experiment: Path, mode: str, run_id: str) -> dict[str, Any]:
    return json.loads((experiment / "results" / mode / run_id / "results.json").read_text())


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def one_error_line(output: str) -> None:
    """No traceback, and at most one ``Error:`` line (plus an optional ``hint:``)."""
    assert "Traceback" not in output, output
    assert sum(line.startswith("Error:") for line in output.splitlines()) <= 1, output


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Content, mode and mtime of every file under ``root`` (links are not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            st = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            out[str(path.relative_to(root))] = (content, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def own_pytorch_image(pytorch_image: str) -> Iterator[str]:
    """A private tag of harness/pytorch as built from this checkout, for tests of the agent inside.

    Other test sessions on a shared engine rebuild harness/pytorch from their own code at any
    time; a run built on this tag keeps running this checkout's agent. Set it as ``base_image``.
    """
    import docker

    from conftest import build_test_framework_image
    from harness.image_context import _source_hash
    from harness.images import repo_root

    root = repo_root()
    want = _source_hash(root)[:16] if root is not None else "unknown"
    client = docker.from_env()
    image = client.images.get(pytorch_image)
    if (image.labels or {}).get("harness.source_hash") != want:  # replaced since the session built it
        image = client.images.get(build_test_framework_image("pytorch"))
    snapshot = f"harness-test-snapshot/pytorch:{want}"
    image.tag(snapshot)
    try:
        yield snapshot
    finally:
        try:
            client.images.remove(snapshot)
        except docker.errors.APIError:
            pass  # still used by an experiment image another test holds: harmless
        client.close()
