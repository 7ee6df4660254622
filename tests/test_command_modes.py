"""Modes given as command lines, run for real, and unmodified scripts timed per step (issue #11).

Real processes (local backend) and a real container for the in-image bootstrap; real PyTorch and
Keras on the CPU. The scripts here import nothing from harness.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import cli

# An unmodified PyTorch script with flags, as users bring them: argparse, SGD, a DataLoader.
TRAIN = r'''
import argparse, os, torch
from torch.utils.data import DataLoader, TensorDataset
parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--width", type=int, default=256)
args = parser.parse_args()
torch.manual_seed(0)
torch.set_num_threads(1)
x, y = torch.randn(1024, 64), torch.randint(0, 4, (1024,))
loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
model = torch.nn.Sequential(torch.nn.Linear(64, args.width), torch.nn.ReLU(), torch.nn.Linear(args.width, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
steps = 0
for epoch in range(args.epochs):
    for xb, yb in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
        steps += 1
print("STEPS", steps, "OMP", os.environ.get("OMP_NUM_THREADS"), flush=True)
'''

NO_OPTIMIZER = r'''
import torch
w = torch.zeros(8, requires_grad=True)
for _ in range(50):
    ((w - 1) ** 2).sum().backward()
    with torch.no_grad():
        w -= 0.1 * w.grad
        w.grad.zero_()
print("STEPS 0", flush=True)
'''

KERAS = r'''
import sys
import numpy as np
import tensorflow as tf
batch = int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.random((600, 16), dtype=np.float32)
y = (x.sum(axis=1) > 8).astype("int32")
model = tf.keras.Sequential([tf.keras.Input((16,)), tf.keras.layers.Dense(32, activation="relu"),
                             tf.keras.layers.Dense(2)])
model.compile(optimizer="sgd", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=batch, epochs=2, verbose=0)
print("FIT-DONE", flush=True)
'''


def experiment(tmp_path: Path, modes: dict[str, Any], files: dict[str, str], framework: str = "pytorch",
               seeds: list[int] | None = None) -> Path:
    path = tmp_path / "exp"
    path.mkdir()
    config = {"competition": "cmdmodes", "kaggle_slug": "cmdmodes", "framework": framework, "modes": modes,
              "seeds": seeds or [0], "sampling_interval": 0.5}
    (path / "experiment_config.json").write_text(json.dumps(config, indent=2))
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def harness(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    return result


def runs_of(path: Path, mode: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((path / "results" / mode).glob("*/results.json"))]


def printed_steps(path: Path, mode: str) -> list[int]:
    logs = sorted((path / "results" / mode).glob("*/stdout.log"))
    return [int(next(line.split()[1] for line in log.read_text().splitlines() if line.startswith("STEPS")))
            for log in logs]


def test_unmodified_pytorch_script_with_flags_gets_per_step_records_and_a_throughput(tmp_path: Path) -> None:
    path = experiment(tmp_path, {
        "baseline": {"command": ["python", "train.py", "--batch-size", "16"]},
        "optimization": {"command": "python train.py --batch-size 64", "env": {"OMP_NUM_THREADS": "1"}},
    }, {"train.py": TRAIN}, seeds=[0, 1])
    result = harness("run", "baseline", "optimization", "--backend", "local", "-e", str(path))
    assert result.exit_code == 0, result.output
    for mode, size, steps in (("baseline", 16, 128), ("optimization", 64, 32)):
        runs = runs_of(path, mode)
        assert len(runs) == 2 and printed_steps(path, mode) == [steps, steps]
        for doc in runs:
            assert doc["run"]["status"] == "completed"
            assert doc["run"]["command"][1:] == ["train.py", "--batch-size", str(size)]
            data = doc["modes"][mode]
            assert len(data["batch_times"]) == steps  # one record per optimizer step
            assert len(data["data_wait_times"]) == steps  # each with its data wait
            assert {n for _, n in data["batch_sizes"]} == {size}
            assert data["summary"]["throughput"] > 0
            assert not doc["run"].get("notes")
    assert "OMP 1" in (next((path / "results" / "optimization").glob("*/stdout.log"))).read_text()

    result = harness("compare", str(path), "--no-plots", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    throughput = doc["comparison"]["metrics"]["throughput"]
    assert throughput["test"]["method"] in ("welch", "paired")  # steady-state throughput is tested, not only end to end
    assert len(throughput["baseline"]["values"]) == len(throughput["candidate"]["values"]) == 2
    assert all(v > 0 for v in throughput["baseline"]["values"] + throughput["candidate"]["values"])


def test_a_script_without_an_optimizer_completes_with_the_note(tmp_path: Path) -> None:
    path = experiment(tmp_path, {"baseline": {"script": "manual.py"}}, {"manual.py": NO_OPTIMIZER})
    result = harness("run", "baseline", "--backend", "local", "-e", str(path))
    assert result.exit_code == 0, result.output
    (doc,) = runs_of(path, "baseline")
    assert doc["run"]["status"] == "completed"
    assert doc["run"]["notes"] == ["no optimizer steps seen: per-step timing unavailable (end-to-end time only)"]
    assert doc["modes"]["baseline"]["batch_times"] == []
    assert doc["modes"]["baseline"]["summary"]["total_time"] > 0


@pytest.mark.parametrize("how", ["mode", "environment"])
def test_instrumentation_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    mode: dict[str, Any] = {"command": "python train.py --epochs 1"}
    if how == "mode":
        mode["instrument"] = False
    else:
        monkeypatch.setenv("HARNESS_AUTO_INSTRUMENT", "0")
    path = experiment(tmp_path, {"baseline": mode}, {"train.py": TRAIN})
    result = harness("run", "baseline", "--backend", "local", "-e", str(path))
    assert result.exit_code == 0, result.output
    (doc,) = runs_of(path, "baseline")
    assert printed_steps(path, "baseline") == [64]
    assert doc["modes"]["baseline"]["batch_times"] == []
    assert not doc["run"].get("notes")


def test_a_one_off_mode_from_the_command_line_is_run_and_recorded(tmp_path: Path) -> None:
    path = experiment(tmp_path, {"baseline": {"command": "python train.py --epochs 1"}}, {"train.py": TRAIN})
    result = harness("run", "wide", "--mode", "wide=python train.py --epochs 1 --width 512", "--backend", "local",
                     "-e", str(path))
    assert result.exit_code == 0, result.output
    (doc,) = runs_of(path, "wide")
    assert doc["run"]["command"][1:] == ["train.py", "--epochs", "1", "--width", "512"]
    assert len(doc["modes"]["wide"]["batch_times"]) == 64
    (state,) = (path / "results" / "plans").glob("*/state.json")
    plan = json.loads(state.read_text())
    assert plan["one_off_modes"] == {"wide": {"command": "python train.py --epochs 1 --width 512"}}
    assert json.loads((path / "experiment_config.json").read_text())["modes"].keys() == {"baseline"}


@pytest.mark.tensorflow
def test_unmodified_keras_fit_script_gets_per_step_records(tmp_path: Path) -> None:
    path = experiment(tmp_path, {"baseline": {"script": "fit.py", "args": ["50"]}}, {"fit.py": KERAS},
                      framework="tensorflow")
    result = harness("run", "baseline", "--backend", "local", "-e", str(path))
    assert result.exit_code == 0, result.output
    (doc,) = runs_of(path, "baseline")
    data = doc["modes"]["baseline"]
    assert [n for _, n in data["batch_sizes"]] == ([50] * 12) * 2
    assert len(data["batch_times"]) == 24 and data["summary"]["throughput"] > 0
    assert len(data["metrics"]["losses"]) == 24


@pytest.mark.parametrize("mode, files, message", [
    ({"command": "/usr/bin/python3 train.py"}, {"train.py": TRAIN},
     "modes.baseline.command: the program must be python, python3 or an executable inside the experiment folder"),
    ({"command": "python missing.py --fast"}, {},
     "modes.baseline.command: missing.py not found in the experiment folder"),
    ({"command": "python train.py", "env": {"HARNESS_SEED": "3"}}, {"train.py": TRAIN},
     "modes.baseline.env: HARNESS_SEED is harness's own"),
])
@pytest.mark.docker
def test_bad_commands_are_refused_before_anything_is_built_or_written(
        tmp_path: Path, mode: dict[str, Any], files: dict[str, str], message: str) -> None:
    import docker

    path = experiment(tmp_path, {"baseline": mode}, files)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = harness("run", "baseline", "--backend", "docker", "-e", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: experiment_config.json: " + message), result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    client = docker.from_env()
    assert client.images.list(filters={"label": "harness.experiment=cmdmodes"}) == []  # nothing built
    client.close()


def test_shell_metacharacters_reach_the_script_as_words(tmp_path: Path) -> None:
    echo = "import sys, json; print('ARGS', json.dumps(sys.argv[1:]))\n"
    path = experiment(tmp_path, {"baseline": {"command": "python echo.py $HOME '>' out.txt ; ls | cat"}},
                      {"echo.py": echo})
    result = harness("run", "baseline", "--backend", "local", "-e", str(path))
    assert result.exit_code == 0, result.output
    log = next((path / "results" / "baseline").glob("*/stdout.log")).read_text()
    line = next(line for line in log.splitlines() if line.startswith("ARGS"))
    assert json.loads(line[5:]) == ["$HOME", ">", "out.txt", ";", "ls", "|", "cat"]
    assert not (path / "out.txt").exists()


@pytest.mark.docker
def test_in_a_container_an_unmodified_script_gets_per_step_records(pytorch_image: str, tiny_experiment: Any) -> None:
    """The bootstrap ships inside the image's harness and works there (python3, the image's site-packages)."""
    from harness.backends import RunOptions, RunRequest, run_mode
    from harness.experiment import load_experiment

    exp = tiny_experiment({"train": TRAIN}, name="cmdcontainer")
    config = json.loads((exp.path / "experiment_config.json").read_text())
    config["modes"] = {"baseline": {"command": "python train.py --epochs 1 --batch-size 32",
                                    "env": {"OMP_NUM_THREADS": "1"}}}
    (exp.path / "experiment_config.json").write_text(json.dumps(config))
    exp = load_experiment(exp.path)
    lines: list[str] = []
    outcome = run_mode(RunRequest(experiment=exp, mode="baseline", seed=0, options=RunOptions(backend="docker"),
                                  echo=lines.append))
    assert outcome.status == "completed", "\n".join(lines)
    assert "STEPS 32 OMP 1" in lines
    doc = json.loads((outcome.run_dir / "results.json").read_text())
    assert doc["run"]["command"] == ["python3", "train.py", "--epochs", "1", "--batch-size", "32"]
    data = doc["modes"]["baseline"]
    assert len(data["batch_times"]) == 32 and len(data["data_wait_times"]) == 32
    assert {n for _, n in data["batch_sizes"]} == {32}
    assert not doc["run"].get("notes")


def test_resume_runs_the_one_off_mode_the_plan_recorded(tmp_path: Path) -> None:
    """A plan cut short before its one-off mode ran: --resume finds the command in state.json."""
    from harness.experiment import load_experiment
    from harness.modes import parse_cli_mode
    from harness.plan import execute, make_plan, save_plan
    from harness.settings import RunOptions

    path = experiment(tmp_path, {"baseline": {"command": "python train.py --epochs 1"}}, {"train.py": TRAIN})
    exp = load_experiment(path).with_one_off_modes(dict([parse_cli_mode("wide=python train.py --epochs 1 "
                                                                        "--width 512")]))
    plan = make_plan(exp, ["wide"], [0], RunOptions(backend="local"))
    save_plan(exp, plan)  # as a Ctrl-C before the first run leaves it
    result = execute(load_experiment(path), [], None, RunOptions(backend="local"), resume=plan.plan_id, echo=None)
    assert not result.failed
    (doc,) = runs_of(path, "wide")
    assert doc["run"]["command"][1:] == ["train.py", "--epochs", "1", "--width", "512"]
    assert len(doc["modes"]["wide"]["batch_times"]) == 64
