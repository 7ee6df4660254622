"""The host-load probe: parsing recorded /proc files, and a real busy loop seen from the host's view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.hostload import HostLoadProbe, read_cpu_ticks, read_loadavg, read_psi_some_total


def _proc(tmp_path: Path, *, load: str, stat: str, psi: str | None) -> Path:
    proc = tmp_path / "proc"
    (proc / "pressure").mkdir(parents=True)
    (proc / "loadavg").write_text(load)
    (proc / "stat").write_text(stat)
    if psi is not None:
        (proc / "pressure" / "cpu").write_text(psi)
    return proc


STAT = ("cpu  1000 10 500 8000 100 5 5 30 0 0\n"
        "cpu0 500 5 250 4000 50 2 2 15 0 0\n"
        "cpu1 500 5 250 4000 50 3 3 15 0 0\n"
        "intr 12345\nctxt 999\n")
PSI = "some avg10=52.16 avg60=26.80 avg300=10.14 total=41535497\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def test_parsers_on_recorded_files(tmp_path: Path) -> None:
    proc = _proc(tmp_path, load="4.40 2.10 1.00 3/191 1999\n", stat=STAT, psi=PSI)
    assert read_loadavg(proc) == 4.4
    ticks = read_cpu_ticks(proc)
    assert ticks is not None and ticks.cpus == 2
    assert abs(ticks.busy - 15.2) < 1e-9 and abs(ticks.idle - 81.0) < 1e-9 and abs(ticks.steal - 0.3) < 1e-9
    assert read_psi_some_total(proc) == 41.535497


def test_missing_files_are_named_not_fatal(tmp_path: Path) -> None:
    proc = _proc(tmp_path, load="garbage", stat="nothing here\n", psi=None)
    probe = HostLoadProbe(proc)
    record = probe.finish()
    assert set(record["unavailable"]) == {"loadavg", "cpu", "psi"}
    assert "pressure/cpu" in record["unavailable"]["psi"]


def test_steal_and_psi_from_counter_deltas(tmp_path: Path) -> None:
    proc = _proc(tmp_path, load="1.0 1.0 1.0 1/1 1\n", stat=STAT, psi=PSI)
    probe = HostLoadProbe(proc)
    (proc / "stat").write_text(STAT.replace("cpu  1000 10 500 8000 100 5 5 30", "cpu  1100 10 500 8050 100 5 5 80"))
    (proc / "pressure" / "cpu").write_text(PSI.replace("total=41535497", "total=41585497"))
    record = probe.finish(own_cpu_s=0.0)
    assert abs(record["steal_fraction"] - 50 / 200) < 1e-9
    assert record["psi_cpu_some"] > 0 and record["loadavg"]["mean"] == 1.0 and record["host_cpus"] == 2


SPIN = """
import sys, time
while time.process_time() < {cpu}:
    pass
print(time.process_time(), flush=True)
time.sleep({linger})
"""


def _spinner(cpu: float, linger: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SPIN.format(cpu=cpu, linger=linger)], stdout=subprocess.PIPE,
                            text=True)


def test_a_child_that_ended_is_the_runs_own_cpu() -> None:
    """The script's CPU time (a reaped child) counts as the run's own, not as other load."""
    probe = HostLoadProbe()
    child = _spinner(0.8, 0.0)
    used = float(child.stdout.readline())
    child.wait()
    record = probe.finish()
    own = record["own_cores"] * record["wall_s"]
    assert used <= own <= used + 0.3, (used, record)  # + the interpreter's start-up and our own sampling


def test_a_process_that_is_not_ours_is_other_load() -> None:
    """CPU burnt by a process that is not (yet) reaped is other load, however busy the machine is."""
    probe = HostLoadProbe()
    child = _spinner(0.8, 30.0)
    try:
        used = float(child.stdout.readline())
        record = probe.finish()
    finally:
        child.kill()
        child.wait()
    assert record["other_cores"] * record["wall_s"] >= used - 0.05, (used, record)  # 10 ms ticks
    assert record["own_cores"] * record["wall_s"] < 0.2
    assert 0.0 <= record["steal_fraction"] <= 1.0
