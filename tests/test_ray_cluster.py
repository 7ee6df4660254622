"""A real two-node Ray cluster started with docs/plans.md's own `ray start` lines, token authentication on.

The recipe is read from the docs, so the docs say what was tested. It runs on a free port with its
own --temp-dir (other sessions may run Ray on this machine); teardown stops exactly the processes of
this cluster (those of its session folder and their children), never `ray stop`, which kills every
Ray process of the machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from test_plan import write_experiment

ROOT = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
SCRIPT = "import time; time.sleep(2.0); print('done')\n"


def recipe() -> list[str]:
    """The command lines of docs/plans.md's local-cluster recipe."""
    text = (ROOT / "docs" / "plans.md").read_text()
    section = text[text.index("### A local cluster for trying it"):]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "docs/plans.md lost its local-cluster recipe"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolation_flags() -> list[str]:
    """Ports of our own, so that another Ray on this machine does not collide with this one."""
    flags = ["--disable-usage-stats"]
    for flag in ("--ray-client-server-port", "--dashboard-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
                 "--node-manager-port", "--object-manager-port"):
        flags += [flag, str(free_port())]
    return flags


def stop_cluster(temp_dir: str) -> None:
    """Stop the processes of this cluster only: those naming its temp dir, and their children."""
    ours: dict[int, psutil.Process] = {}
    me = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid not in me and any(temp_dir in part for part in proc.info["cmdline"] or []):
                ours[proc.pid] = proc
                for child in proc.children(recursive=True):
                    ours[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in ours.values():
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(ours.values()), timeout=10)
    for proc in alive:  # Ray's gcs_server and raylet may outlast SIGTERM
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


class Cluster:
    def __init__(self, home: Path, port: int, env: dict[str, str], harness_args: list[str]) -> None:
        self.home, self.port, self.env, self.harness_args = home, port, env, harness_args

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def harness(self, *args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def cluster():
    """docs/plans.md's recipe, line by line: token, head, a second node; the harness line kept for the tests."""
    home = Path(tempfile.mkdtemp(prefix="hr18home"))
    temp_dir = tempfile.mkdtemp(prefix="hr18", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    harness_args: list[str] = []
    try:
        for line in recipe():
            words = shlex.split(line.replace("6379", str(port)))
            extra = {}
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                key, _, value = words.pop(0).partition("=")
                extra[key] = value
            if words[:2] == ["ray", "start"]:
                words += ["--temp-dir", temp_dir, *isolation_flags()] if "--head" in words else isolation_flags()
            elif words[:2] == ["ray", "stop"]:
                continue  # teardown stops this cluster's processes only
            elif words[0] == "harness":
                harness_args = words[1:]
                continue
            words[0] = RAY if words[0] == "ray" else words[0]
            done = subprocess.run(words, env={**env, **extra}, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert (home / ".ray" / "auth_token").is_file()
        assert harness_args, "the recipe has no harness line"
        yield Cluster(home, port, env, harness_args)
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _state(exp: Path) -> dict:
    (state,) = sorted((exp / "results" / "plans").glob("*/state.json"))[-1:]
    return json.loads(state.read_text())


def _overlapping(runs: list[dict]) -> list[tuple[str, str]]:
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if min(a["ended"], b["ended"]) - max(a["started"], b["started"]) > 0:
                out.append((a["run_id"], b["run_id"]))
    return out


@pytest.mark.timeout(600)
def test_recipe_plan_connects_with_the_token_one_run_per_machine_both_modes_per_node(tmp_path: Path, cluster) -> None:
    exp = write_experiment(tmp_path / "exp", {"baseline": SCRIPT, "optimization": SCRIPT})
    done = cluster.harness(*cluster.harness_args, cwd=exp)  # no RAY_* variable in its environment
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # Ray's own noise stays out: no C++ warnings, no connection notices.
    assert "gcs_client" not in out and "Authentication token" not in out and "Connecting to" not in out, out
    state = _state(exp)
    runs = state["runs"]
    assert [(r["mode"], r["seed"], r["status"]) for r in runs] == [
        ("baseline", 0, "completed"), ("optimization", 0, "completed"),
        ("baseline", 1, "completed"), ("optimization", 1, "completed")]
    by_node: dict[str, set[str]] = {}
    for r in runs:
        by_node.setdefault(r["node"], set()).add(r["mode"])
    assert len(by_node) == 2 and all(modes == {"baseline", "optimization"} for modes in by_node.values()), by_node
    # A seed's modes on one node.
    assert all(len({r["node"] for r in runs if r["seed"] == s}) == 1 for s in (0, 1))
    # One run per node at a time, and both Ray nodes are one physical host here: no overlap at all.
    for node in by_node:
        assert _overlapping([r for r in runs if r["node"] == node]) == []
    assert _overlapping(runs) == []
    machine = Path("/etc/machine-id").read_text().strip()
    for r in runs:
        data = json.loads((exp / "results" / r["mode"] / r["run_id"] / "results.json").read_text())
        hw = data["run"]["hardware"]
        assert hw["machine_id"] == machine and hw["cpu_count"] == os.cpu_count() and hw["cpu_model"]
        assert hw["gpu_count"] == 0 and hw["gpu_names"] == []
        assert data["run"]["ray"]["node_id"] == r["node"]
        assert "parallel" not in data["run"] or not data["run"]["parallel"]
    shown = cluster.harness("compare", "--format", "json", "--no-plots", cwd=exp)
    assert shown.returncode == 0, shown.stderr[-3000:]
    comparison = json.loads(shown.stdout)["comparison"]
    # The same machine ran both modes: nothing confounds node with mode, no hardware difference.
    assert not any("cannot separate node from mode" in w for w in comparison["warnings"]), comparison["warnings"]
    assert not any("different hardware" in f or "in parallel" in f for f in comparison["fairness"])


@pytest.mark.timeout(600)
def test_parallel_lets_runs_share_a_host_and_compare_says_so(tmp_path: Path, cluster) -> None:
    exp = write_experiment(tmp_path / "exp", {"baseline": SCRIPT, "optimization": SCRIPT})
    done = cluster.harness(*cluster.harness_args, "--parallel", cwd=exp)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    runs = _state(exp)["runs"]
    assert all(r["status"] == "completed" for r in runs)
    # Each node still takes one run at a time (1 CPU each), but the two nodes' runs overlap on this host.
    for node in {r["node"] for r in runs}:
        assert _overlapping([r for r in runs if r["node"] == node]) == []
    assert _overlapping(runs), "with --parallel the two nodes of one host ran at once"
    for r in runs:
        data = json.loads((exp / "results" / r["mode"] / r["run_id"] / "results.json").read_text())
        assert data["run"]["hardware"]["machine_id"]
        # Two runs at a time on this host (its two Ray nodes), each on its own CPU set.
        assert data["run"]["parallel"]["runs_at_once"] == 2, data["run"]["parallel"]
        assert data["run"]["parallel"]["cpuset"] == r["cpuset"] is not None
    for a, b in _overlapping(runs):
        sets = [r["cpuset"] for r in runs if r["run_id"] in (a, b)]
        assert None not in sets and sets[0] != sets[1], sets  # disjoint: cpu_slots splits the host's CPUs
    shown = cluster.harness("compare", "--format", "json", "--no-plots", cwd=exp)
    assert shown.returncode == 0, shown.stderr[-3000:]
    fairness = json.loads(shown.stdout)["comparison"]["fairness"]
    assert any("ran in parallel with other runs (--parallel)" in f for f in fairness), fairness


@pytest.mark.timeout(120)
def test_wrong_token_is_one_line_naming_authentication(tmp_path: Path, cluster) -> None:
    exp = write_experiment(tmp_path / "exp", {"baseline": SCRIPT, "optimization": SCRIPT})
    started = time.monotonic()
    done = cluster.harness(*cluster.harness_args, cwd=exp, env={"RAY_AUTH_TOKEN": "0" * 32})
    took = time.monotonic() - started
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert done.returncode != 0
    assert len(errors) == 1 and "authentication failed" in errors[0] and cluster.address in errors[0], lines
    assert not any("Traceback" in line or "gcs_client" in line for line in lines), lines
    assert any(line.startswith("hint:") and "ray get-auth-token" in line for line in lines), lines
    assert took < 60, f"took {took:.0f} s: Ray's 20 s retry loop was not cut short"
