"""`harness run A B --until-confident` for real: the CLI, the local backend, the agent, the monitor.

Each mode's script replays a recorded run: the per-batch times of a real 3000-batch run, scaled
down to 40 batches of ~15 ms, times a per-seed offset with 2 % run-to-run noise (the recording's
spread). The candidate replays them 20 % slower, or not at all slower (A/A).
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from harness.cli import cli

REPLAY = r'''
import math, os, random, time
from harness.monitor import ExperimentMonitor
SLOWER = {slower}
seed = int(os.environ.get("HARNESS_SEED", "0"))
rng = random.Random(1000 * seed + {salt})
offset = math.exp(rng.gauss(0.0, 0.02))  # the run's own speed, as a recorded run shows it
m = ExperimentMonitor("replay")
m.start_mode(os.environ["HARNESS_MODE"])
for i, _ in enumerate(m.batches(range(40), size=8)):
    time.sleep(0.015 * offset * (1 + SLOWER) * math.exp(rng.gauss(0.0, 0.03)))
m.stop_mode()
'''


def _experiment(root: Path, slower: float) -> Path:
    root.mkdir(parents=True)
    (root / "experiment_config.json").write_text(json.dumps({
        "competition": "replay", "kaggle_slug": "replay", "framework": "pytorch",
        "modes": {"baseline": "baseline.py", "optimization": "optimization.py"}, "seeds": [0, 1, 2],
        "sampling_interval": 0.25, "resources": {"memory": None}}))
    (root / "baseline.py").write_text(REPLAY.format(slower=0.0, salt=1))
    (root / "optimization.py").write_text(REPLAY.format(slower=slower, salt=2))
    return root


def _state(root: Path) -> dict:
    states = sorted((root / "results" / "plans").glob("*/state.json"))
    return json.loads(states[-1].read_text())


def test_a_20_percent_slower_candidate_is_called_slower_within_a_few_seeds(tmp_path: Path) -> None:
    root = _experiment(tmp_path / "slow", 0.20)
    result = CliRunner().invoke(cli, ["run", "baseline", "optimization", "--until-confident", "--backend", "local",
                                      "-e", str(root)])
    assert result.exit_code == 0, result.output
    state = _state(root)["sequential"]
    looks = state["looks"]
    # 3 seeds in the simulation nearly always; on a busy 2-core box sleep jitter adds noise: allow 5.
    assert state["decision"] == "SLOWER" and [look["seeds"] for look in looks] == list(range(3, 3 + len(looks)))
    assert looks[-1]["seeds"] <= 5 and all(look["state"] == "continue" for look in looks[:-1])
    assert "after 3 seeds: \u2212" in result.output and "resolved: SLOWER" in result.output
    assert f"Sequential plan resolved: SLOWER, speed \u2212" in result.output
    assert f"after {looks[-1]['seeds']} seeds a mode (the interval holds under the plan's looks" in result.output
    assert len(_state(root)["runs"]) == 2 * looks[-1]["seeds"]
    assert 1 / 1.2 / 1.08 < looks[-1]["ratio"] < 1 / 1.2 * 1.08 and looks[-1]["low"] < 1 / 1.2


def test_an_aa_plan_ends_at_the_maximum_and_resume_keeps_its_decision(tmp_path: Path) -> None:
    root = _experiment(tmp_path / "aa", 0.0)
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "baseline", "optimization", "--until-confident", "--max-seeds", "4",
                                 "--backend", "local", "-e", str(root)])
    assert result.exit_code == 0, result.output
    state = _state(root)
    assert state["sequential"]["decision"] in ("unresolved", "within noise")
    assert all(look["state"] not in ("FASTER", "SLOWER") for look in state["sequential"]["looks"])
    assert len(state["runs"]) <= 8 and state["seeds"][:3] == [0, 1, 2]
    again = runner.invoke(cli, ["run", "--resume", "-e", str(root)])
    assert again.exit_code == 0, again.output
    assert _state(root)["sequential"] == state["sequential"] and len(_state(root)["runs"]) == len(state["runs"])


def test_bad_sequential_flags_are_one_line_errors(tmp_path: Path) -> None:
    root = _experiment(tmp_path / "flags", 0.0)
    runner = CliRunner()
    cases = [
        (["run", "baseline", "--until-confident"], "Error: --until-confident compares two modes"),
        (["run", "baseline", "optimization", "--until-confident", "--max-seeds", "2"],
         "Error: --max-seeds must be at least 3"),
        (["run", "baseline", "optimization", "--until-confident", "--budget", "soon"],
         "Error: --budget must be a duration like 2h"),
        (["run", "baseline", "optimization", "--until-confident", "--seeds", "0,1"],
         "Error: --until-confident chooses the seeds itself"),
        (["run", "baseline", "optimization", "--budget", "2h"], "Error: --max-seeds and --budget belong to"),
        (["run", "baseline", "optimization", "--until-confident", "--parallel"],
         "Error: --until-confident runs one pair at a time"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, [*args, "-e", str(root)])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith(message), (args, result.output)
        assert "Traceback" not in result.output
    assert not (root / "results" / "plans").exists()  # nothing written for bad input
    dry = runner.invoke(cli, ["run", "baseline", "optimization", "--until-confident", "--budget", "1h",
                              "--dry-run", "-e", str(root)])
    assert dry.exit_code == 0 and "Sequential: looks after 3 seeds a mode" in dry.output
    assert "within a budget of 3600 s" in dry.output
