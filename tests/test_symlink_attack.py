"""A run that plants symlinks (and FIFOs) at every name the host touches must not reach any host file.

The run folder is writable from inside the container; the host writes stdout.log and results.json
there and reads results.json, events.jsonl and the log's tail (for errors.log). An attacker in the
container swaps those names for links to host files while the run starts and ends. Nothing outside
the run folder may change, nothing of the host files may be copied into harness's files, and
harness must neither hang on a FIFO nor crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runs import harness, one_error_line, own_pytorch_image, plan_state, snapshot, write_experiment  # noqa: F401

MARKER = "VICTIM-7f3a"
# Every name the host writes or reads in a run folder, and the plan files' names in case any
# of them ever moved there.
PLANTED = ["stdout.log", "results.json", "events.jsonl", "errors.log", "state.json", "lock", "results.json.tmp"]

PLANT = r'''
import os, sys, time
VICTIMS = {victims!r}
NAMES = {names!r}
if run_dir and os.fork() == 0:
    os.setsid()
    t0 = time.time()
    while later and not os.path.exists(os.path.join(run_dir, "events.jsonl")) and time.time() - t0 < 60:
        time.sleep(0.01)  # plant once the agent has started and opened its events, or at once
    i, t0 = 0, time.time()
    while time.time() - t0 < 90:  # bounded, so a harness that fails to stop it leaves no endless process
        i += 1
        for n, name in enumerate(NAMES):
            tmp = os.path.join(run_dir, ".plant-%d" % n)
            try:
                if (i + n) % 5 == 0 and name != "stdout.log":
                    os.mkfifo(tmp)  # a reader that opens this without O_NONBLOCK hangs
                else:
                    os.symlink(VICTIMS[(i + n) % len(VICTIMS)], tmp)
                os.replace(tmp, os.path.join(run_dir, name))
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        time.sleep(0.003)
    os._exit(0)
'''
# Docker: the image's entrypoint plants from before the agent starts until the container is gone.
ENTRYPOINT = ("import sys\nargv = sys.argv[1:]\n"
              "run_dir = argv[argv.index('--results') + 1] if '--results' in argv else None\n"
              "later = int(argv[argv.index('--seed') + 1]) % 2\n"
              "{plant}\nos.execvp(argv[0], argv)\n")
# Local: no entrypoint; the script plants, from a child in its own session that outlives it.
LOCAL_PLANT = ("import os\nrun_dir = os.environ['HARNESS_RESULTS_DIR']\n"
               "later = int(os.environ['HARNESS_SEED']) % 2\n{plant}\n")

DOCKERFILE = """ARG BASE_IMAGE=harness/pytorch:latest
FROM ${BASE_IMAGE}
WORKDIR /workspace
COPY . /workspace/
ENTRYPOINT ["python3", "/workspace/planter.py"]
"""

# Seeds 2, 3, 6, 7, ... fail, so their log tails go into errors.log (a read of the planted stdout.log);
# odd seeds start planting once the run is under way, even ones before the agent starts.
SCRIPT = ("import os, sys, time\n"
          "print('training', flush=True)\n"
          "time.sleep(1.5)\n"
          "sys.exit(int(os.environ['HARNESS_SEED']) % 4 // 2)\n")


def _victims(root: Path) -> list[str]:
    """Host files an attacker would like to append to or read: a log, a results-shaped JSON, a new name."""
    root.mkdir()
    (root / "victim.log").write_text(f"{MARKER} host secret line\n")
    fake = {"schema_version": 1, "experiment_name": MARKER, "timestamp": 1, "datetime": "x",
            "run": {"run_id": MARKER, "mode": "baseline", "seed": 0, "status": "completed"},
            "environment": {}, "modes": {"baseline": {"batch_times": [[0, 0.1]], "summary": {}}}}
    (root / "victim.json").write_text(json.dumps(fake))
    (root / "victim.jsonl").write_text(json.dumps({"t": 1, "m": 1, "type": "run_end", "status": MARKER}) + "\n")
    return [str(root / "victim.log"), str(root / "victim.json"), str(root / "victim.jsonl"),
            str(root / "created-by-harness")]


def _attack(tmp_path: Path, backend: str, seeds: int, name: str, **config: object) -> None:
    host = tmp_path / "host"
    victims = _victims(host)
    before = snapshot(host)
    plant = PLANT.format(victims=victims, names=PLANTED)
    if backend == "docker":
        script, files = SCRIPT, {"planter.py": ENTRYPOINT.format(plant=plant), "Dockerfile": DOCKERFILE}
    else:
        script, files = LOCAL_PLANT.format(plant=plant) + SCRIPT, {}
    exp = write_experiment(tmp_path / "exp", {"baseline": script}, name=name, seeds=list(range(seeds)),
                           files=files, timeout=60, **config)  # a run hung on a FIFO ends as "timeout", and fails the test
    source_before = snapshot(exp)
    proc = harness(["run", "baseline", "--backend", backend, "-e", str(exp)])
    one_error_line(proc.stdout)
    assert proc.returncode == 1, proc.stdout  # the odd seeds failed; nothing else went wrong

    assert snapshot(host) == before, "a host file outside the run folder changed"
    assert not (host / "created-by-harness").exists()
    assert {k: v for k, v in snapshot(exp).items() if not k.startswith("results")} == source_before
    state = plan_state(exp)
    assert len(state["runs"]) == seeds
    assert all(r["status"] in ("completed", "failed") for r in state["runs"]), state["runs"]
    # Nothing the host wrote holds a byte of the victims: no read went through a link.
    for path in (exp / "results").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert MARKER not in path.read_text(errors="replace"), path
    assert "created-by-harness" not in proc.stdout and MARKER not in proc.stdout


@pytest.mark.docker
def test_planted_links_in_the_container_reach_no_host_file(tmp_path: Path, own_pytorch_image: str) -> None:
    from conftest import _remove_experiment_images

    try:
        _attack(tmp_path, "docker", seeds=20, name="symlinkattack", base_image=own_pytorch_image)
    finally:
        _remove_experiment_images(["symlinkattack"])


def test_planted_links_in_a_local_run_reach_no_host_file(tmp_path: Path) -> None:
    _attack(tmp_path, "local", seeds=6, name="symlinklocal")
