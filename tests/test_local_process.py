"""The local backend's process handling: a run is a process group in its own session, and all of it goes.

A script may leave a ``setsid`` grandchild holding the stdout pipe; the timeout (or a stop) still ends
the run at once, and nothing the run started outlives it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from runs import harness, one_error_line, pid_alive, plan_state, write_experiment

# The grandchild escapes the script's process group and session, with our stdout still open.
ESCAPES = ("import os, subprocess, sys, time\n"
           "out = os.environ['HARNESS_RESULTS_DIR']\n"
           "g = subprocess.Popen(['setsid', 'sleep', '300'])\n"
           "c = subprocess.Popen(['sleep', '300'])\n"
           "open(os.path.join(out, 'pids'), 'w').write(f'{g.pid} {c.pid}')\n"
           "print('SCRIPT-READY', flush=True)\n"
           "time.sleep(300)\n")


def test_timeout_ends_a_run_whose_setsid_grandchild_holds_stdout(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "exp", {"baseline": ESCAPES}, name="setsidlocal")
    # Before the fix harness read the pipe until the grandchild's 300 s were over: a hang fails here.
    proc = harness(["run", "baseline", "--backend", "local", "--timeout", "3", "-e", str(exp)], timeout=120)
    one_error_line(proc.stdout)
    assert proc.returncode == 1, proc.stdout
    run = plan_state(exp)["runs"][0]
    assert run["status"] == "timeout", run
    pids = [int(p) for p in (exp / "results" / "baseline" / run["run_id"] / "pids").read_text().split()]
    try:
        assert not [p for p in pids if pid_alive(p)], "a process of the run outlived it"
    finally:
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
