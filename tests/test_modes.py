"""A mode is a command line (issue #11): the forms, their validation, and the checks against the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, UsageError
from harness.modes import ModeSpec, check_mode_files, parse_cli_mode, program_argv, validate_mode_value


@pytest.mark.parametrize("value, argv", [
    ("baseline.py", ["python", "baseline.py"]),
    ({"command": ["python", "main.py", "--epochs", "1", "--batch_size", "20"]},
     ["python", "main.py", "--epochs", "1", "--batch_size", "20"]),
    ({"command": "python main.py --epochs 1 --batch_size 80"}, ["python", "main.py", "--epochs", "1", "--batch_size", "80"]),
    ({"command": "python main.py --name 'two words'"}, ["python", "main.py", "--name", "two words"]),
    ({"script": "train.py", "args": ["--amp"]}, ["python", "train.py", "--amp"]),
    # no shell: metacharacters are words like any other
    ({"command": "python main.py $HOME > out.txt; rm -rf / | cat"},
     ["python", "main.py", "$HOME", ">", "out.txt;", "rm", "-rf", "/", "|", "cat"]),
])
def test_the_forms(value: object, argv: list[str]) -> None:
    spec = validate_mode_value("m", value)
    assert (ModeSpec.model_construct(script=spec, args=[], env={}, command=None).argv
            if isinstance(spec, str) else spec.argv) == argv


@pytest.mark.parametrize("value, message", [
    ({"command": 5}, "m.command: must be a string or a list of strings (got 5)"),
    ({"command": "python 'x"}, "m.command: cannot be split into words (No closing quotation): \"python 'x\""),
    ({"command": ""}, "m.command: is empty"),
    ({"command": []}, "m.command: is empty"),
    ({"script": "t.py", "command": "python t.py"}, "m: give either `command` or `script`"),
    ({}, "m: give either `command` or `script`"),
    ({"command": "python t.py", "args": ["-x"]}, "m.args: only with `script` (put the arguments in `command`)"),
    ({"script": "/abs/t.py"}, "m.script: must be a .py file inside the experiment (got '/abs/t.py')"),
    ({"script": "run.sh"}, "m.script: must be a .py file inside the experiment (got 'run.sh')"),
    ({"command": "python t.py", "env": {"HARNESS_MODE": "x"}},
     "m.env: HARNESS_MODE is harness's own; modes may not set HARNESS_* variables"),
    ({"command": "python t.py", "env": {"harness_seed": "1"}},
     "m.env: harness_seed is harness's own; modes may not set HARNESS_* variables"),
    ({"command": "python t.py", "env": {"A-B": "1"}}, "m.env: 'A-B' is not a valid variable name"),
    ({"command": "python t.py", "shell": True}, "m.shell: unknown field; a mode takes command, script, args, env, instrument"),
    ("../t.py", "m: script must be a .py file inside the experiment (got '../t.py')"),
    (3, "m: must be a script path or an object with `command` or `script` (got int)"),
])
def test_bad_forms_name_the_field(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_mode_value("m", value)
    assert str(info.value) == message


def test_mode_names() -> None:
    for name in ("Upper", "all", "comparison", "a b", ""):
        with pytest.raises(ValueError, match="is not a usable mode name"):
            validate_mode_value(name, "x.py")


def folder(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.py").write_text("")
    run = tmp_path / "run.sh"
    run.write_text("#!/bin/sh\nexec python3 main.py\n")
    run.chmod(0o755)
    (tmp_path / "plain.sh").write_text("#!/bin/sh\n")
    return tmp_path


@pytest.mark.parametrize("value", [
    "main.py",
    {"command": "python main.py --amp"},
    {"command": ["python3", "sub/train.py", "--config=x.py", "-c", "nope.py"]},
    {"command": "./run.sh --fast"},
    {"command": "run.sh"},
    {"command": "python -m torch.distributed.run --nproc-per-node 1 main.py"},
    {"command": "python -c 'print(1)' missing.py"},  # after -c CODE, the words are the code's
])
def test_files_that_exist_pass(tmp_path: Path, value: object) -> None:
    check_mode_files("m", validate_mode_value("m", value), folder(tmp_path))


@pytest.mark.parametrize("value, message", [
    ("missing.py", "modes.m: missing.py not found in the experiment folder"),
    ({"command": "python main.py missing.py"}, "modes.m.command: missing.py not found in the experiment folder"),
    ({"script": "missing.py"}, "modes.m.script: missing.py not found in the experiment folder"),
    ({"command": "/usr/bin/python3 main.py"},
     "modes.m.command: the program must be python, python3 or an executable inside the experiment folder "
     "(got '/usr/bin/python3')"),
    ({"command": "../outside.sh"}, "modes.m.command: the program must be python, python3 or an executable"),
    ({"command": "torchrun main.py"}, "modes.m.command: the program must be python, python3 or an executable "
                                      "inside the experiment folder (got 'torchrun')"),
    ({"command": "bin/missing"}, "modes.m.command: bin/missing not found in the experiment folder"),
    ({"command": "./plain.sh"}, "modes.m.command: ./plain.sh is not executable"),
    ({"command": "python /etc/x.py"}, "modes.m.command: /etc/x.py is not inside the experiment folder"),
])
def test_files_that_do_not_exist_fail_naming_the_field(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_mode_files("m", validate_mode_value("m", value), folder(tmp_path))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_program_argv_uses_the_environments_python_and_no_path_lookup() -> None:
    assert program_argv(validate_mode_value("m", {"command": "python3 a.py x"}), "/venv/bin/python") == \
        ["/venv/bin/python", "a.py", "x"]
    assert program_argv(validate_mode_value("m", {"command": "run.sh x"}), "python3") == ["./run.sh", "x"]
    assert program_argv(validate_mode_value("m", {"command": "bin/run x"}), "python3") == ["bin/run", "x"]
    assert program_argv("b.py", "python3") == ["python3", "b.py"]


def test_a_dump_keeps_only_what_was_given() -> None:
    spec = validate_mode_value("m", {"command": "python a.py", "env": {"A": "1"}})
    assert spec.model_dump() == {"command": "python a.py", "env": {"A": "1"}}
    assert ModeSpec.model_validate(spec.model_dump()) == spec


def test_one_off_modes_from_the_command_line() -> None:
    name, spec = parse_cli_mode("amp=python main.py --amp")
    assert name == "amp" and spec.argv == ["python", "main.py", "--amp"]
    for bad, message in [("amp", "--mode: expected NAME='COMMAND'"), ("=python x.py", "--mode: expected"),
                         ("amp=", "--mode: expected"), ("Bad=python x.py", "--mode: 'Bad' is not a usable mode"),
                         ("amp=python 'x", "--mode: amp.command: cannot be split")]:
        with pytest.raises(UsageError) as info:
            parse_cli_mode(bad)
        assert str(info.value).startswith(message), (bad, str(info.value))
