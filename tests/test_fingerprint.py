"""The run fingerprint: what it hashes, what it leaves out, and how a difference is named."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.backends.identity import for_run
from harness.fingerprint import (differences, from_env, identity_keys, local_runtime, make_fingerprint,
                                 normalise_command, run_config, take_from_env)

CONFIG = {"competition": "demo", "kaggle_slug": "demo", "framework": "pytorch", "seeds": [0, 1, 2],
          "modes": {"baseline": "baseline.py", "optimization": "optimization.py"}, "epochs": 2,
          "batch_size": 32, "parameters": {"num_clips": 96}, "primary_metric": "auto"}
SETTINGS = {"backend": "local", "cpus": 2.0, "memory": "8g", "gpus": "none"}


def _experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    (exp / "results" / "baseline").mkdir(parents=True)
    (exp / "baseline.py").write_text("print('base')\n")
    (exp / "optimization.py").write_text("import baseline\n")
    (exp / "requirements.txt").write_text("numpy\n")
    (exp / "README.md").write_text("# notes\n")
    (exp / "experiment_config.json").write_text(json.dumps(CONFIG))
    (exp / "data" / "train.csv").write_text("a,b\n")
    (exp / "results" / "baseline" / "x.json").write_text("{}")
    return exp


def _fp(exp: Path, mode: str = "optimization", config: dict = CONFIG, settings: dict = SETTINGS,
        command: list[str] | None = None) -> dict:
    command = command or [sys.executable, str(exp / f"{mode}.py")]
    return for_run(exp, config, mode, command, settings, {"python": "3.11.7", "frameworks": {"torch": "2.4.1"}})


def test_parts_hold_command_code_config_settings_runtime(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    fp = _fp(exp)
    parts = fp["parts"]
    assert parts["command"] == ["python", "optimization.py"]
    assert sorted(parts["code"]) == ["baseline.py", "optimization.py", "requirements.txt"]  # no data, results, docs
    assert "seeds" not in parts["config"] and "modes" not in parts["config"] and "primary_metric" not in parts["config"]
    assert parts["config"]["mode"] == "optimization.py" and parts["config"]["epochs"] == 2
    assert parts["settings"] == dict(sorted(SETTINGS.items()))
    assert len(fp["hash"]) == 16 and fp["hash"] == _fp(exp)["hash"]  # deterministic


def test_what_changes_the_hash_and_what_does_not(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    before = _fp(exp)
    # Outputs, data, docs and the seed list are not the run's identity.
    (exp / "data" / "train.csv").write_text("a,b\n1,2\n")
    (exp / "README.md").write_text("# more notes\n")
    (exp / "results" / "baseline" / "y.json").write_text("{}")
    (exp / "notes.log").write_text("hello\n")
    assert _fp(exp, config={**CONFIG, "seeds": [0, 1, 2, 3, 4]})["hash"] == before["hash"]
    # A comment is an edit: bytes are hashed (docs/statistics.md says why).
    (exp / "optimization.py").write_text("import baseline\n# tuned\n")
    after = _fp(exp)
    assert after["hash"] != before["hash"]
    assert differences(before, after) == ["optimization.py changed"]


def test_differences_are_named(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    base = _fp(exp)
    assert differences(base, base) == []
    assert differences(base, _fp(exp, settings={**SETTINGS, "cpus": 4.0})) == ["--cpus 2 vs 4"]
    assert differences(base, _fp(exp, config={**CONFIG, "epochs": 3})) == ["epochs 2 vs 3"]
    assert differences(base, _fp(exp, config={**CONFIG, "parameters": {"num_clips": 200}})) == \
        ["parameters.num_clips 96 vs 200"]
    assert differences(base, _fp(exp, command=["python3", "optimization.py", "--amp"])) == \
        ["command 'python optimization.py' vs 'python optimization.py --amp'"]
    (exp / "utils.py").write_text("X = 1\n")
    assert differences(base, _fp(exp)) == ["utils.py added"]
    other_runtime = for_run(exp, CONFIG, "optimization", ["python", "optimization.py"], SETTINGS,
                            {"python": "3.12.1", "frameworks": {"torch": "2.5.0"}})
    (exp / "utils.py").unlink()
    assert differences(base, other_runtime) == ["utils.py added", "Python 3.11.7 vs 3.12.1", "torch 2.4.1 vs 2.5.0"]
    assert differences(None, base) == ["no fingerprint recorded (run made by an older harness)"]


def test_image_difference_is_named_only_when_the_code_is_the_same() -> None:
    def fp(code: str, image: str) -> dict:
        return make_fingerprint(command=["python", "b.py"], code={"b.py": code}, config={}, settings={},
                                runtime={"image_id": image})

    assert differences(fp("1", "sha256:a"), fp("1", "sha256:b")) == ["image differs"]
    assert differences(fp("1", "sha256:a"), fp("2", "sha256:b")) == ["b.py changed"]


def test_both_backends_write_one_command(tmp_path: Path) -> None:
    local = normalise_command(["/opt/venv/bin/python3.11", str(tmp_path / "baseline.py"), "--fold", "0"], tmp_path)
    docker = normalise_command(["python3", "baseline.py", "--fold", "0"], None, "/workspace")
    assert local == docker == ["python", "baseline.py", "--fold", "0"]
    assert normalise_command(["./train.sh", "/workspace/x.py"], None, "/workspace") == ["./train.sh", "x.py"]


def test_run_config_keeps_only_the_runs_mode() -> None:
    cfg = run_config(CONFIG, "baseline")
    assert cfg["mode"] == "baseline.py" and "optimization.py" not in json.dumps(cfg)


def test_local_runtime_names_the_interpreter_and_framework() -> None:
    rt = local_runtime()
    assert rt["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "torch" in rt["frameworks"]  # the venv has torch (CPU)


def test_from_env_reads_only_a_fingerprint() -> None:
    fp = make_fingerprint(command=["python"], code={}, config={}, settings={}, runtime={})
    assert from_env({"HARNESS_FINGERPRINT": json.dumps(fp)}) == fp
    assert from_env({}) is None and from_env({"HARNESS_FINGERPRINT": "{oops"}) is None
    assert from_env({"HARNESS_FINGERPRINT": "[1]"}) is None
    environ = {"HARNESS_FINGERPRINT": json.dumps(fp), "PATH": "/bin"}
    assert take_from_env(environ) == fp and environ == {"PATH": "/bin"}  # the script never sees it


def test_identity_keys_separate_what_the_user_chose_from_what_the_machine_decided() -> None:
    """On Ray each machine has its own image, backend (auto) and GPUs; the code key ignores those only."""
    def fp(**over) -> dict:
        parts = {"command": ["python", "optimization.py"], "code": {"optimization.py": "v1"}, "config": {"epochs": 1},
                 "settings": dict(SETTINGS), "runtime": {"image_id": "sha256:a"}}
        for key, value in over.items():
            parts[key] = {**parts[key], **value} if isinstance(value, dict) else value
        return make_fingerprint(**parts)

    code, decided = identity_keys(fp())
    assert identity_keys(fp()) == (code, decided)
    for machine_side in ({"runtime": {"image_id": "sha256:b"}}, {"settings": {"backend": "docker"}},
                         {"settings": {"gpus": "0"}}):
        other = identity_keys(fp(**machine_side))
        assert other[0] == code and other[1] != decided, machine_side
    for user_side in ({"code": {"optimization.py": "v2"}}, {"settings": {"cpus": 4.0}}, {"config": {"epochs": 2}},
                      {"command": ["python", "optimization.py", "--amp"]}):
        assert identity_keys(fp(**user_side))[0] != code, user_side
    assert identity_keys(None) == (None, None)
