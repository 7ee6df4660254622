"""compare on recorded results: one fingerprint per mode, seeds, overlapping runs, a busy host (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fixtures.results.synth import write_experiment
from harness.cli import cli
from harness.compare import compare_experiment, stats
from harness.fingerprint import make_fingerprint

T0 = 1_705_312_200.0
LATER = T0 + 3600.0


def fp(optimization: str = "v1", baseline: str = "b1", cpus: float = 2.0, mode: str = "optimization") -> dict:
    """A fingerprint as the backend makes it: the mode's command, the code of both scripts, settings, image."""
    return make_fingerprint(command=["python", f"{mode}.py"], code={"baseline.py": baseline, "optimization.py": optimization},
                            config={"epochs": 1}, settings={"backend": "docker", "cpus": cpus},
                            runtime={"image_id": f"sha256:{baseline}{optimization}"})


def _edit_and_rerun(root: Path) -> Path:
    """Both modes with v1 (no speed-up); then optimization.py edited (v2, 20 % faster) and run again."""
    write_experiment(root, seeds=[0, 1, 2], modes={"baseline": {"step": 0.05, "fingerprint": fp(mode="baseline")},
                                                   "optimization": {"step": 0.05, "fingerprint": fp()}})
    write_experiment(root, seeds=[0, 1, 2], start=LATER, rng_seed=1,
                     modes={"optimization": {"step": 0.04, "fingerprint": fp("v2")}})
    return root


def _cli(*args: str) -> "object":
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "120"}, catch_exceptions=False)


def test_only_the_newest_code_is_compared_and_older_runs_are_named(tmp_path: Path) -> None:
    exp = _edit_and_rerun(tmp_path / "edit")
    comp = compare_experiment(exp)
    assert len(comp.runs["optimization"]) == 3
    assert all(r.fingerprint["hash"] == fp("v2")["hash"] for r in comp.runs["optimization"])
    assert comp.headline.verdict == stats.FASTER
    assert len(comp.left_out_older) == 1
    line = comp.left_out_older[0]
    assert line.startswith("optimization: 3 run(s) of older code (optimization.py changed since): ")
    assert all(r.run_id in line for r in comp.runs_left_out_older)
    assert not any("pooled" in f for f in comp.fairness)
    result = _cli("compare", str(exp), "--no-plots")
    assert result.exit_code == 0
    assert "Left out (older code):\n  - optimization: 3 run(s) of older code (optimization.py changed since)" \
        in result.output
    assert "optimization: 3 run(s) (seeds 0, 1, 2)" in result.output


def test_all_runs_pools_with_a_warning_that_names_the_difference(tmp_path: Path) -> None:
    exp = _edit_and_rerun(tmp_path / "edit")
    comp = compare_experiment(exp, all_runs=True)
    assert len(comp.runs["optimization"]) == 6 and comp.left_out_older == []
    assert any(f.startswith("--all-runs pooled optimization runs of 2 different fingerprints (3 run(s) with "
                            "optimization.py changed since)") for f in comp.fairness), comp.fairness
    dup = [w for w in comp.warnings if w.startswith("optimization has 2 runs of seed 0 (runs ")]
    assert len(dup) == 1  # and it names them
    assert not comp.paired
    result = _cli("compare", str(exp), "--no-plots", "--all-runs")
    assert result.exit_code == 0 and "--all-runs pooled optimization runs" in result.output


def test_the_paired_test_never_pairs_different_fingerprints(tmp_path: Path) -> None:
    seeds = [0, 1, 2, 3, 4]
    same = write_experiment(tmp_path / "same", seeds=seeds, modes={"baseline": {"fingerprint": fp(mode="baseline")},
                                                                   "optimization": {"fingerprint": fp()}})
    assert compare_experiment(same).paired
    mixed = write_experiment(tmp_path / "mixed", seeds=seeds, modes={
        "baseline": {"fingerprint": fp(mode="baseline")},
        "optimization": {"fingerprint": fp(), "per_seed": {3: {"fingerprint": fp("v2")}, 4: {"fingerprint": fp("v2")}}}})
    pooled = compare_experiment(mixed, all_runs=True)
    assert len(pooled.runs["optimization"]) == 5 and not pooled.paired
    newest = compare_experiment(mixed)
    assert sorted(r.seed for r in newest.runs["optimization"]) == [3, 4] and not newest.paired


def test_two_fingerprints_in_one_plan_are_an_error_for_the_runs_after_the_change(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "plan", seeds=[0, 1, 2], modes={
        "baseline": {"fingerprint": fp(mode="baseline"), "plan_id": "P1"},
        "optimization": {"fingerprint": fp(), "plan_id": "P1", "per_seed": {2: {"fingerprint": fp("v2")}}}})
    comp = compare_experiment(exp)
    assert sorted(r.seed for r in comp.runs["optimization"]) == [0, 1]
    bad = [line for line in comp.left_out_older if "while plan P1 ran" in line]
    assert len(bad) == 1 and "optimization.py changed" in bad[0] and "-s2-" in bad[0]


def test_runs_without_a_fingerprint_are_older_than_runs_with_one(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "old", seeds=[0, 1, 2], modes={"baseline": {}, "optimization": {}})
    assert compare_experiment(exp).left_out_older == []  # results of an older harness: nothing to choose
    write_experiment(exp, seeds=[0, 1, 2], start=LATER, modes={"optimization": {"fingerprint": fp()}})
    comp = compare_experiment(exp)
    assert [line.split(":")[0] for line in comp.left_out_older] == ["optimization"]
    assert "no fingerprint recorded" in comp.left_out_older[0]


def test_a_repeated_seed_is_a_warning(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "twice", seeds=[0, 1, 2], modes={"baseline": {"fingerprint": fp(mode="baseline")},
                                                                       "optimization": {"fingerprint": fp()}})
    write_experiment(exp, seeds=[0], start=LATER, modes={"baseline": {"fingerprint": fp(mode="baseline")}})
    comp = compare_experiment(exp)
    assert any(w.startswith("baseline has 2 runs of seed 0") for w in comp.warnings), comp.warnings
    assert not any("seed 1" in w for w in comp.warnings)


def test_shared_code_that_differs_between_the_modes_is_named(tmp_path: Path) -> None:
    """baseline.py edited and only baseline run again: optimization (which imports it) ran the old one."""
    exp = write_experiment(tmp_path / "shared", seeds=[0, 1, 2], modes={"baseline": {"fingerprint": fp(mode="baseline")},
                                                                        "optimization": {"fingerprint": fp()}})
    write_experiment(exp, seeds=[0, 1, 2], start=LATER, modes={"baseline": {"fingerprint": fp(baseline="b2", mode="baseline")}})
    comp = compare_experiment(exp)
    assert any(f.startswith("baseline and optimization ran different versions of baseline.py") for f in comp.fairness)
    edited = _edit_and_rerun(tmp_path / "own")  # only the candidate's own script differs: nothing to say
    assert not any("different versions" in f for f in compare_experiment(edited).fairness)


# ----------------------------------------------------------------------------- the machine


def test_overlapping_runs_of_two_plans_are_named(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "overlap", seeds=[0, 1, 2], modes={
        "baseline": {"plan_id": "PA"}, "optimization": {"plan_id": "PA"}})
    lone = compare_experiment(exp)
    assert not any("overlapped" in f for f in lone.fairness)
    # A second plan started 5 s after the first: its runs ran beside the first plan's.
    write_experiment(exp, seeds=[3, 4, 5], start=T0 + 5, modes={
        "baseline": {"plan_id": "PB"}, "optimization": {"plan_id": "PB"}})
    comp = compare_experiment(exp)
    warn = [f for f in comp.fairness if "overlapped in time on the same machine" in f]
    assert len(warn) == 1, comp.fairness
    assert "plans PA and PB" in warn[0] or "plans PB and PA" in warn[0]


def _on_machines(exp: Path, where) -> None:
    """Record ``where(plan_id) -> (hostname, machine id, ray node id)`` in each run, as the Ray executor does."""
    from harness.results import load_results_file, write_json_atomic

    for path in (exp / "results").glob("*/*/results.json"):
        data = load_results_file(path)
        host, machine_id, node_id = where(data["run"]["plan_id"])
        data["run"].update(node=host, hardware={"hostname": host, "machine_id": machine_id, "cpu_count": 8},
                           ray={"node_id": node_id})
        write_json_atomic(path, data)


def test_overlapping_runs_count_only_on_one_machine(tmp_path: Path) -> None:
    """Runs overlap on one machine (its machine id: two Ray nodes on one host are one), never across machines."""
    exp = write_experiment(tmp_path / "machines", seeds=[0, 1, 2], modes={
        "baseline": {"plan_id": "PA"}, "optimization": {"plan_id": "PA"}})
    write_experiment(exp, seeds=[3, 4, 5], start=T0 + 5, modes={
        "baseline": {"plan_id": "PB"}, "optimization": {"plan_id": "PB"}})
    _on_machines(exp, lambda plan: ("node-a", "aaaa", "n1") if plan == "PA" else ("node-b", "bbbb", "n2"))
    assert not any("overlapped" in f for f in compare_experiment(exp).fairness)
    # Two Ray nodes (n1, n2) with different host names on one machine: the runs shared it.
    _on_machines(exp, lambda plan: ("node-a", "aaaa", "n1") if plan == "PA" else ("node-a2", "aaaa", "n2"))
    warn = [f for f in compare_experiment(exp).fairness if "overlapped in time on the same machine" in f]
    assert len(warn) == 1, warn
    assert "plans PA and PB" in warn[0] or "plans PB and PA" in warn[0], warn


def test_ray_plan_state_runs_are_placed_by_their_node(tmp_path: Path) -> None:
    """A Ray plan's state.json names the Ray node: its machine comes from the runs that ran there."""
    exp = write_experiment(tmp_path / "raystate", seeds=[0, 1, 2], modes={
        "baseline": {"plan_id": "PA"}, "optimization": {"plan_id": "PA"}})
    _on_machines(exp, lambda plan: ("node-a", "aaaa", "n1"))
    state = exp / "results" / "plans" / "PX" / "state.json"
    state.parent.mkdir(parents=True)

    def other_run(node: str) -> None:
        state.write_text(json.dumps({"plan_id": "PX", "executor": "ray", "parallel": False, "runs": [
            {"mode": "amp", "seed": 0, "status": "completed", "run_id": "20240115T100000-s0-ffff",
             "started": T0 + 10, "ended": T0 + 40, "node": node}]}))

    other_run("n9")  # a node no compared run ran on: another machine
    assert not any("overlapped" in f for f in compare_experiment(exp).fairness)
    other_run("n1")  # the node the compared runs ran on
    warn = [f for f in compare_experiment(exp).fairness if "overlapped" in f]
    assert len(warn) == 1 and "amp 20240115T100000-s0-ffff" in warn[0], warn


def test_runs_of_other_modes_in_plan_state_count_as_overlap(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "state", seeds=[0, 1, 2], modes={"baseline": {}, "optimization": {}})
    state = exp / "results" / "plans" / "PX" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"plan_id": "PX", "parallel": False, "runs": [
        {"mode": "amp", "seed": 0, "status": "completed", "run_id": "20240115T100000-s0-ffff",
         "started": T0 + 10, "ended": T0 + 40, "node": None}]}))
    comp = compare_experiment(exp)
    warn = [f for f in comp.fairness if "overlapped" in f]
    assert len(warn) == 1 and "amp 20240115T100000-s0-ffff" in warn[0]


def test_each_machine_runs_its_own_image_and_that_is_not_other_code(tmp_path: Path) -> None:
    """A Ray plan over two machines: each builds its own image; the runs are one code, paired by seed.
    On one machine a different image is other code all the same."""
    from harness.results import load_results_file, write_json_atomic

    seeds = [0, 1, 2, 3, 4, 5]

    def where(seed: int) -> str:
        return "aaaa" if seed % 2 == 0 else "bbbb"

    def fp_on(mode: str, image: str) -> dict:
        return make_fingerprint(command=["python", f"{mode}.py"], code={"baseline.py": "b1", "optimization.py": "v1"},
                                config={"epochs": 1}, settings={"backend": "docker", "cpus": 2.0},
                                runtime={"image_id": f"sha256:{image}"})

    modes = {m: {"step": 0.05 if m == "baseline" else 0.04,
                 "per_seed": {s: {"fingerprint": fp_on(m, f"{m}-{where(s)}")} for s in seeds}}
             for m in ("baseline", "optimization")}
    exp = write_experiment(tmp_path / "cluster", seeds=seeds, modes=modes)
    for path in (exp / "results").glob("*/*/results.json"):
        data = load_results_file(path)
        machine_id = where(data["run"]["seed"])
        data["run"].update(node=f"node-{machine_id}", hardware={"hostname": f"node-{machine_id}",
                                                                 "machine_id": machine_id, "cpu_count": 8})
        write_json_atomic(path, data)
    comp = compare_experiment(exp)
    assert comp.left_out_older == [] and len(comp.runs["optimization"]) == 6 and comp.paired
    # A later optimization run on machine aaaa with an image rebuilt there: aaaa's older runs are left out.
    write_experiment(exp, seeds=[6], start=LATER, modes={"optimization": {"step": 0.04,
                                                                           "fingerprint": fp_on("optimization", "new")}})
    for path in (exp / "results" / "optimization").glob("*-s6-*/results.json"):
        data = load_results_file(path)
        data["run"].update(node="node-aaaa", hardware={"hostname": "node-aaaa", "machine_id": "aaaa", "cpu_count": 8})
        write_json_atomic(path, data)
    comp = compare_experiment(exp)
    assert comp.left_out_older == [f"optimization: 3 run(s) of older code (image differs since): "
                                   + ", ".join(r.run_id for r in sorted(comp.runs_left_out_older,
                                                                        key=lambda r: r.started_at))]
    assert sorted(r.seed for r in comp.runs["optimization"]) == [1, 3, 5, 6]


def _load(loadavg: float, other: float) -> dict:
    return {"wall_s": 20.0, "loadavg": {"mean": loadavg, "max": loadavg, "samples": 20}, "host_cpus": 2,
            "host_busy_cores": other + 1.0, "own_cores": 1.0, "other_cores": other, "steal_fraction": 0.0,
            "psi_cpu_some": 0.1}


def test_a_busier_host_during_one_mode_is_a_warning(tmp_path: Path) -> None:
    busy = write_experiment(tmp_path / "busy", seeds=[0, 1, 2], modes={
        "baseline": {"host_load": _load(4.4, 2.1)}, "optimization": {"host_load": _load(1.1, 0.1)}})
    comp = compare_experiment(busy)
    warn = [f for f in comp.fairness if f.startswith("The host was busier during one mode's runs")]
    assert len(warn) == 1
    assert "baseline runs saw a load average of 4.4 on 2 cores, other processes used 2.1 cores" in warn[0]
    assert "optimization runs saw a load average of 1.1, other processes used 0.1 cores" in warn[0]
    same = write_experiment(tmp_path / "same", seeds=[0, 1, 2], modes={
        "baseline": {"host_load": _load(1.2, 0.1)}, "optimization": {"host_load": _load(1.1, 0.15)}})
    assert not any("busier" in f for f in compare_experiment(same).fairness)


def test_steal_is_named(tmp_path: Path) -> None:
    load = {**_load(1.0, 0.1), "steal_fraction": 0.12}
    exp = write_experiment(tmp_path / "steal", seeds=[0, 1, 2], modes={
        "baseline": {"host_load": load}, "optimization": {"host_load": _load(1.0, 0.1)}})
    assert any(f.startswith("baseline runs lost 12 % of the CPU time to other virtual machines")
               for f in compare_experiment(exp).fairness)



def test_cpu_pressure_of_a_modes_own_threads_is_a_diagnosis_not_a_fairness_warning(tmp_path: Path) -> None:
    # As the demo on 2 cores: optimization's DataLoader workers make its own tasks wait; nothing else ran.
    quiet = write_experiment(tmp_path / "quiet", seeds=[0, 1, 2], modes={
        "baseline": {"host_load": {**_load(1.5, 0.006), "psi_cpu_some": 0.01}},
        "optimization": {"host_load": {**_load(2.0, 0.006), "psi_cpu_some": 0.24}}})
    comp = compare_experiment(quiet)
    assert not any("waited for a CPU" in f for f in comp.fairness)
    note = [d for d in comp.diagnosis if "waited for a CPU" in d]
    assert note == ["optimization's tasks waited for a CPU 24 % of the time (baseline's 1 %) while other "
                    "processes were nearly idle: it keeps more threads busy than the 2 cores (e.g. data-loading "
                    "workers beside the training loop), a cost of the mode itself."]
    # Other processes used the CPU during the optimization runs: the same pressure is the machine's.
    shared = write_experiment(tmp_path / "shared", seeds=[0, 1, 2], modes={
        "baseline": {"host_load": {**_load(1.5, 0.006), "psi_cpu_some": 0.01}},
        "optimization": {"host_load": {**_load(2.0, 0.3), "psi_cpu_some": 0.24}}})
    comp = compare_experiment(shared)
    assert [f for f in comp.fairness if "waited for a CPU" in f] == [
        "Tasks waited for a CPU 1 % of the time during baseline runs and 24 % during optimization runs "
        "(host CPU pressure)."]
    assert not any("waited for a CPU" in d for d in comp.diagnosis)
