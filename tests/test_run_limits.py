"""Per-run limits and the run's file system: the pids limit, a ':' in the path, a writable scratch folder."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from runs import harness, one_error_line, own_pytorch_image, plan_state, results_of, write_experiment  # noqa: F401

# Prints what the kernel enforces on this run, then lingers so the test can inspect the container.
PIDS_SCRIPT = ("import os, time\n"
               "for path in ('/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/pids.max'):\n"
               "    if os.path.exists(path):\n"
               "        print('PIDS-MAX', open(path).read().strip(), flush=True)\n"
               "        break\n"
               "time.sleep(2)\n")


def _watch_pids_limit(name: str, stop: threading.Event, seen: dict[str, int | None]) -> None:
    """Inspect this experiment's containers as they come and go (HostConfig.PidsLimit)."""
    import docker

    client = docker.from_env()
    try:
        while not stop.is_set():
            try:  # (the image build's own containers carry no run id)
                runs = client.containers.list(all=True, filters={"label": [f"harness.experiment={name}",
                                                                            "harness.run_id"]})
            except docker.errors.NotFound:  # one went between the listing and its inspection
                continue
            for c in runs:
                try:
                    c.reload()
                except docker.errors.NotFound:
                    continue
                seen.setdefault(c.id, c.attrs["HostConfig"].get("PidsLimit"))
            stop.wait(0.05)
    finally:
        client.close()


def _run_with_watch(exp: Path, name: str, args: list[str]) -> tuple[str, list[int | None]]:
    seen: dict[str, int | None] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_pids_limit, args=(name, stop, seen), daemon=True)
    watcher.start()
    try:
        proc = harness(["run", "baseline", "--backend", "docker", "-e", str(exp), *args])
    finally:
        stop.set()
        watcher.join(timeout=30)
    one_error_line(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout, list(seen.values())


@pytest.mark.docker
def test_pids_limit_default_flag_and_config_reach_the_container(tmp_path: Path, own_pytorch_image: str) -> None:
    from conftest import _remove_experiment_images

    name = "pidslimit"
    exp = write_experiment(tmp_path / "exp", {"baseline": PIDS_SCRIPT}, name=name, base_image=own_pytorch_image)
    try:
        for args, expected in (([], 4096), (["--pids", "64"], 64)):
            out, limits = _run_with_watch(exp, name, args)
            assert limits and set(limits) == {expected}, limits  # what the engine was told
            assert f"PIDS-MAX {expected}" in out, out  # what the kernel enforces inside
            run = plan_state(exp)["runs"][0]
            assert results_of(exp, "baseline", run["run_id"])["run"]["pids_limit"] == expected
            assert plan_state(exp)["options"]["pids"] == (None if not args else expected)
            for p in (exp / "results" / "plans").iterdir():  # the next plan is the only one
                if not p.is_dir():
                    continue  # .start.lock: one plan at a time (harness.plan.guard)
                for f in p.iterdir():
                    f.unlink()
                p.rmdir()
        cfg = json.loads((exp / "experiment_config.json").read_text())
        cfg["resources"]["pids"] = 128
        (exp / "experiment_config.json").write_text(json.dumps(cfg))
        out, limits = _run_with_watch(exp, name, [])
        assert set(limits) == {128} and "PIDS-MAX 128" in out, (limits, out)
    finally:
        _remove_experiment_images([name])


def test_pids_flag_on_the_local_backend_is_recorded_as_asked_and_bad_values_are_refused(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "exp", {"baseline": "print('ok')\n"}, name="pidslocal")
    proc = harness(["run", "baseline", "--backend", "local", "--pids", "300", "-e", str(exp)])
    assert proc.returncode == 0, proc.stdout
    state = plan_state(exp)
    assert state["options"]["pids"] == 300  # what was asked
    # A host process gets no limit (as with --cpus and --memory), and results.json does not claim one.
    assert results_of(exp, "baseline", state["runs"][0]["run_id"])["run"]["pids_limit"] is None
    for bad in ("0", "-5", "lots"):
        proc = harness(["run", "baseline", "--backend", "local", "--pids", bad, "-e", str(exp)])
        assert proc.returncode == 2, proc.stdout
        one_error_line(proc.stdout)
        assert "--pids" in proc.stdout


SCRATCH_SCRIPT = ("import os, pathlib\n"
                  "scratch = pathlib.Path(os.environ['HARNESS_SCRATCH_DIR'])\n"
                  "(scratch / 'cache' / 'x.bin').parent.mkdir(parents=True, exist_ok=True)\n"
                  "(scratch / 'cache' / 'x.bin').write_bytes(b'0' * 4096)\n"
                  "assert (scratch / 'cache' / 'x.bin').stat().st_size == 4096\n"
                  "data = pathlib.Path(os.environ['HARNESS_DATA_DIR'])\n"
                  "print('DATA', (data / 'labels.csv').read_text().strip(), flush=True)\n"
                  "print('SCRATCH', scratch, flush=True)\n")


@pytest.mark.docker
def test_a_colon_in_the_path_and_a_writable_scratch_folder_in_docker(tmp_path: Path, own_pytorch_image: str) -> None:
    from conftest import _remove_experiment_images

    exp = write_experiment(tmp_path / "odd:path" / "exp:1", {"baseline": SCRATCH_SCRIPT}, name="oddpath",
                           base_image=own_pytorch_image,
                           files={"data/labels.csv": "a,b\n"})
    try:
        proc = harness(["run", "baseline", "--backend", "docker", "-e", str(exp)])
        one_error_line(proc.stdout)
        assert proc.returncode == 0, proc.stdout
        assert "DATA a,b" in proc.stdout
        run = plan_state(exp)["runs"][0]
        assert results_of(exp, "baseline", run["run_id"])["run"]["status"] == "completed"
    finally:
        _remove_experiment_images(["oddpath"])


def test_a_writable_scratch_folder_in_a_local_run_is_removed_afterwards(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "odd:path" / "exp", {"baseline": SCRATCH_SCRIPT}, name="scratchlocal",
                           files={"data/labels.csv": "a,b\n"})
    proc = harness(["run", "baseline", "--backend", "local", "-e", str(exp)])
    one_error_line(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    scratch = [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("SCRATCH ")]
    assert scratch and not os.path.exists(scratch[0]), scratch  # a fresh folder per run, gone afterwards
