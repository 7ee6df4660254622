"""The catalogue of bad inputs that tests/test_bad_inputs.py runs (issues 13 and 16).

Each :class:`Case` names a *world* (a small, real experiment folder built fresh for the case),
a change that breaks one input in it, and the ``harness`` command line that must refuse it.
Kept apart from the test module so that the table reads as data, one line a case.

Worlds:
  ``tiny``     an experiment whose two modes' scripts print one line (nothing needs Docker);
  ``state``    ``tiny`` plus a plan whose two runs are completed (``run --resume`` has nothing to do);
  ``results``  two completed baseline runs and one completed optimization run (``compare`` works);
  ``bare``     only the parent folder (``harness new`` cases).

Placeholders in ``argv``: ``{exp}`` the experiment folder, ``{parent}`` its parent, ``{tmp}`` the
folder above both (also snapshotted), ``{outside}`` a folder beside the parent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

Mutate = Callable[[Path], None]
PLAN_ID = "20240115T103000-3f9a1c"
RUN_IDS = ("20240115T103000-s0-aaaa", "20240115T103100-s0-bbbb")
NAME = "badinput"
LONG = "x" * 300
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJ = '{"a":' * 100_000 + "1" + "}" * 100_000


@dataclass(frozen=True)
class Case:
    """One bad input: the world, how it is broken, the command, what the refusal must say."""

    id: str
    world: str
    argv: tuple[str, ...]
    mutate: Mutate | None = None
    error: str = ""  # a piece of the ``Error:`` line
    code: int = 2
    docker: bool = False  # needs the engine (the "no image left behind" cases)


# --------------------------------------------------------------------------- mutations
def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        node.pop(last, None)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()


def _edit_json(rel: str, changes: dict[str, Any]) -> Mutate:
    def mutate(exp: Path) -> None:
        path = exp / rel
        data = json.loads(path.read_text())
        for dotted, value in changes.items():
            _set(data, dotted, value)
        path.write_text(json.dumps(data, indent=1, allow_nan=True))
    return mutate


def _write(rel: str, content: str | bytes) -> Mutate:
    def mutate(exp: Path) -> None:
        path = exp / rel
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return mutate


def _make_dir(rel: str) -> Mutate:
    def mutate(exp: Path) -> None:
        path = exp / rel
        if path.exists():
            path.unlink()
        path.mkdir(parents=True)
        (path / "keep.txt").write_text("a user's file\n")
    return mutate


def _remove(rel: str) -> Mutate:
    def mutate(exp: Path) -> None:
        (exp / rel).unlink()
    return mutate


def cfg(**changes: Any) -> Mutate:
    """Change experiment_config.json fields (``resources__cpus`` → ``resources.cpus``)."""
    return _edit_json("experiment_config.json", {k.replace("__", "."): v for k, v in changes.items()})


def cfg_text(text: str | bytes) -> Mutate:
    return _write("experiment_config.json", text)


STATE = f"results/plans/{PLAN_ID}/state.json"


def state(**changes: Any) -> Mutate:
    """Change state.json fields (``runs__0__seed`` → ``runs.0.seed``)."""
    return _edit_json(STATE, {k.replace("__", "."): v for k, v in changes.items()})


def state_text(text: str | bytes) -> Mutate:
    return _write(STATE, text)


def _result_file() -> str:
    return "results/optimization/{run}/results.json"


def result(**changes: Any) -> Mutate:
    """Change the only optimization run's results.json (``modes__optimization__x`` → ``modes.optimization.x``)."""
    def mutate(exp: Path) -> None:
        (run_dir,) = (exp / "results" / "optimization").iterdir()
        _edit_json(str((run_dir / "results.json").relative_to(exp)),
                   {k.replace("__", "."): v for k, v in changes.items()})(exp)
    return mutate


def result_text(text: str | bytes) -> Mutate:
    def mutate(exp: Path) -> None:
        (run_dir,) = (exp / "results" / "optimization").iterdir()
        (run_dir / "results.json").write_bytes(text.encode() if isinstance(text, str) else text)
    return mutate


def batch_time(value: Any, index: int = 5) -> Mutate:
    """Put ``value`` as the seconds of one batch of the optimization run."""
    def mutate(exp: Path) -> None:
        (run_dir,) = (exp / "results" / "optimization").iterdir()
        path = run_dir / "results.json"
        data = json.loads(path.read_text())
        data["modes"]["optimization"]["batch_times"][index][1] = value
        path.write_text(json.dumps(data, allow_nan=True))
    return mutate


def events_only(lines: list[str]) -> Mutate:
    """Replace the optimization run's results.json by an events.jsonl of these lines."""
    def mutate(exp: Path) -> None:
        (run_dir,) = (exp / "results" / "optimization").iterdir()
        (run_dir / "results.json").unlink()
        (run_dir / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    return mutate


def both(*mutations: Mutate) -> Mutate:
    def mutate(exp: Path) -> None:
        for m in mutations:
            m(exp)
    return mutate


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def non_experiment_folder(exp: Path) -> None:
    """The target of ``new badinput`` exists and holds a user's own files (no experiment_config.json)."""
    target = exp.parent / f"kaggle_{NAME}"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work\n")
    (target / "data").mkdir()
    (target / "data" / "train.csv").write_text("a,b\n1,2\n")


def target_is_file(exp: Path) -> None:
    (exp.parent / f"kaggle_{NAME}").write_text("a user's file\n")


def target_is_symlink(exp: Path) -> None:
    real = exp.parent.parent / "outside" / "real"
    real.mkdir()
    (real / "notes.txt").write_text("keep\n")
    (exp.parent / f"kaggle_{NAME}").symlink_to(real)


def target_has_bad_config(exp: Path) -> None:
    target = exp.parent / f"kaggle_{NAME}"
    target.mkdir()
    (target / "experiment_config.json").write_text('{"not": "ours"}')
    (target / "notes.txt").write_text("keep\n")


def _ev(kind: str, **fields: Any) -> str:
    return json.dumps({"t": 1705312200.0, "m": 10.0, "type": kind, **fields}, allow_nan=True)


def _events_completed(dt: Any) -> list[str]:
    return [_ev("run_start", run_id="20240115T103500-s0-cccc", mode="optimization", seed=0,
                experiment=NAME, command=["python"], pid=1),
            *[_ev("batch", i=i, dt=0.05 if i != 3 else dt, wait=0.0, n=32, epoch=0) for i in range(8)],
            _ev("run_end", status="completed", exit_code=0, signal=None, wall_time=1.0, error=None)]


# --------------------------------------------------------------------------- the table
def _new(*args: str) -> tuple[str, ...]:
    return ("new", *args, "--root", "{parent}")


RUN = ("run", "-e", "{exp}", "--backend", "local")
DRY = ("run", "baseline", "-e", "{exp}", "--backend", "local", "--dry-run")
RESUME = ("run", "--resume", "-e", "{exp}", "--backend", "local")
COMPARE = ("compare", "{exp}", "--no-plots")

NAME_CASES = [
    Case("new-dotdot", "bare", _new(".."), error="invalid experiment name"),
    Case("new-dotdot-slash", "bare", _new("../escape"), error="invalid experiment name"),
    Case("new-slash", "bare", _new("a/b"), error="invalid experiment name"),
    Case("new-absolute", "bare", _new("/tmp/escape"), error="invalid experiment name"),
    Case("new-nul", "bare", _new("bad\x00name"), error="invalid experiment name"),
    Case("new-300-chars", "bare", _new(LONG), error="invalid experiment name"),
    Case("new-empty", "bare", _new(""), error="invalid experiment name"),
    Case("new-uppercase", "bare", _new("BirdCLEF"), error="invalid experiment name"),
    Case("new-space", "bare", _new("bird clef"), error="invalid experiment name"),
    Case("new-unicode", "bare", _new("oiseau_é"), error="invalid experiment name"),
    Case("new-dot-start", "bare", _new(".hidden"), error="invalid experiment name"),
    Case("new-prefix-only", "bare", _new("kaggle_"), error="nothing usable follows"),
    Case("new-newline", "bare", _new("a\nb"), error="invalid experiment name"),
    Case("new-bad-framework", "bare", _new(NAME, "--framework", "jax"), error="Invalid value for '--framework'"),
    Case("new-root-is-file", "bare", ("new", NAME, "--root", "{parent}/neighbour.txt"), error="is a file"),
    Case("new-root-under-file", "bare", ("new", NAME, "--root", "{parent}/neighbour.txt/sub"), error="Not a directory"),
    Case("new-root-long-component", "bare", ("new", NAME, "--root", "{parent}/" + "r" * 300),
         error="name too long"),
    Case("new-root-nul", "bare", ("new", NAME, "--root", "{parent}/a\x00b"), error="--root"),
    Case("new-exists-no-force", "tiny", ("new", NAME, "--root", "{parent}"), error="already exists"),
    Case("new-force-non-experiment", "bare", _new(NAME, "--force"), non_experiment_folder,
         error="not a harness experiment"),
    Case("new-force-on-file", "bare", _new(NAME, "--force"), target_is_file, error="not a harness experiment"),
    Case("new-force-on-symlink", "bare", _new(NAME, "--force"), target_is_symlink, error="symbolic link"),
    Case("new-force-foreign-config", "bare", _new(NAME, "--force"), target_has_bad_config,
         error="not a harness experiment"),
    Case("new-unknown-option", "bare", _new(NAME, "--frobnicate"), error="No such option"),
    Case("new-missing-name", "bare", ("new", "--root", "{parent}"), error="Missing argument"),
    Case("run-mode-dotdot", "tiny", (*RUN, "../escape"), error="unknown mode"),
    Case("run-mode-slash", "tiny", (*RUN, "a/b"), error="unknown mode"),
    Case("run-mode-absolute", "tiny", (*RUN, "/etc"), error="unknown mode"),
    Case("run-mode-nul", "tiny", (*RUN, "base\x00line"), error="unknown mode"),
    Case("run-mode-300", "tiny", (*RUN, LONG), error="unknown mode"),
    Case("run-mode-reserved", "tiny", (*RUN, "plans"), error="unknown mode"),
    Case("resume-plan-dotdot", "state", (*RESUME[:2], "../../../outside", *RESUME[2:]), error="plan"),
    Case("resume-plan-absolute", "state", (*RESUME[:2], "/tmp", *RESUME[2:]), error="plan"),
    Case("resume-plan-nul", "state", (*RESUME[:2], "a\x00b", *RESUME[2:]), error="plan"),
    Case("resume-plan-300", "state", (*RESUME[:2], LONG, *RESUME[2:]), error="plan"),
    Case("resume-plan-unknown", "state", (*RESUME[:2], "20990101T000000-000000", *RESUME[2:]), error="no plan"),
    Case("compare-baseline-dotdot", "results", (*COMPARE, "--baseline", "../../outside"), error="--baseline"),
    Case("compare-baseline-absolute", "results", (*COMPARE, "--baseline", "/tmp"), error="--baseline"),
    Case("compare-candidate-slash", "results", (*COMPARE, "--candidate", "a/b"), error="--candidate"),
    Case("compare-candidate-nul", "results", (*COMPARE, "--candidate", "a\x00b"), error="--candidate"),
    Case("compare-candidate-300", "results", (*COMPARE, "--candidate", LONG), error="--candidate"),
    Case("compare-candidate-reserved", "results", (*COMPARE, "--candidate", "comparison"), error="--candidate"),
    Case("compare-runs-dotdot", "results", (*COMPARE, "--runs", "../../outside"), error="--runs"),
    Case("compare-runs-nul", "results", (*COMPARE, "--runs", "a\x00b"), error="--runs"),
    Case("compare-runs-unknown", "results", (*COMPARE, "--runs", "20990101T000000-s0-ffff"), error="no run"),
    Case("experiment-dir-missing", "tiny", ("run", "baseline", "-e", "{parent}/nope", "--dry-run"),
         error="not an experiment"),
    Case("experiment-dir-long", "tiny", ("run", "baseline", "-e", "{parent}/" + "e" * 300, "--dry-run"),
         error="name too long"),
    Case("experiment-dir-nul", "tiny", ("run", "baseline", "-e", "{parent}/a\x00b", "--dry-run"),
         error="--experiment"),
    Case("experiment-dir-is-parent", "tiny", ("run", "baseline", "-e", "{parent}", "--dry-run"),
         error="not an experiment"),
    Case("compare-experiment-missing", "results", ("compare", "{parent}/nope"), error="not a folder"),
    Case("compare-experiment-long", "results", ("compare", "{parent}/" + "c" * 300), error="name too long"),
]

CONFIG_CASES = [
    Case("config-not-json", "tiny", DRY, cfg_text("{ not json"), error="not valid JSON"),
    Case("config-empty", "tiny", DRY, cfg_text(""), error="not valid JSON"),
    Case("config-binary", "tiny", DRY, cfg_text(b"\x00\xff\xfe\x89PNG\r\n"), error="experiment_config.json"),
    Case("config-utf16", "tiny", DRY, cfg_text('{"a": 1}'.encode("utf-16")), error="experiment_config.json"),
    Case("config-list", "tiny", DRY, cfg_text("[1, 2]"), error="must hold a JSON object"),
    Case("config-null", "tiny", DRY, cfg_text("null"), error="must hold a JSON object"),
    Case("config-string", "tiny", DRY, cfg_text('"hello"'), error="must hold a JSON object"),
    Case("config-deep-list", "tiny", DRY, cfg_text(DEEP), error="nested too deeply"),
    Case("config-deep-object", "tiny", DRY, cfg_text(DEEP_OBJ), error="nested too deeply"),
    Case("config-deep-parameters", "tiny", DRY, cfg(parameters={"x": json.loads("[" * 200 + "]" * 200)}),
         error="nested too deeply"),
    Case("config-is-folder", "tiny", DRY, _make_dir("experiment_config.json"), error="not an experiment"),
    Case("config-cpus-nan", "tiny", DRY, cfg(resources__cpus=float("nan")), error="NaN"),
    Case("config-cpus-inf", "tiny", DRY, cfg(resources__cpus=float("inf")), error="Infinity"),
    Case("config-cpus-neg-inf", "tiny", DRY, cfg(resources__cpus=float("-inf")), error="Infinity"),
    Case("config-cpus-1e300", "tiny", DRY, cfg(resources__cpus=1e300), error="resources.cpus"),
    Case("config-cpus-1e400", "tiny", DRY, cfg_text('{"resources": {"cpus": 1e400}}'), error="resources.cpus"),
    Case("config-cpus-zero", "tiny", DRY, cfg(resources__cpus=0), error="resources.cpus"),
    Case("config-cpus-negative", "tiny", DRY, cfg(resources__cpus=-1), error="resources.cpus"),
    Case("config-cpus-text", "tiny", DRY, cfg(resources__cpus="x"), error="resources.cpus"),
    Case("config-cpus-bool", "tiny", DRY, cfg(resources__cpus=True), error="resources.cpus"),
    Case("config-cpus-beyond-host", "tiny", (*DRY[:5], "docker", "--dry-run"), cfg(resources__cpus=4096),
         error="resources.cpus"),
    Case("config-timeout-nan", "tiny", DRY, cfg(timeout=float("nan")), error="NaN"),
    Case("config-timeout-inf", "tiny", DRY, cfg(timeout=float("inf")), error="Infinity"),
    Case("config-timeout-negative", "tiny", DRY, cfg(timeout=-5), error="timeout"),
    Case("config-timeout-zero", "tiny", DRY, cfg(timeout=0), error="timeout"),
    Case("config-timeout-1e300", "tiny", DRY, cfg(timeout=1e300), error="timeout"),
    Case("config-timeout-text", "tiny", DRY, cfg(timeout="10"), error="timeout"),
    Case("config-memory-tiny", "tiny", DRY, cfg(resources__memory="1k"), error="resources.memory"),
    Case("config-memory-5m", "tiny", DRY, cfg(resources__memory="5m"), error="resources.memory"),
    Case("config-memory-zero", "tiny", DRY, cfg(resources__memory="0"), error="resources.memory"),
    Case("config-memory-text", "tiny", DRY, cfg(resources__memory="lots"), error="resources.memory"),
    Case("config-memory-huge", "tiny", DRY, cfg(resources__memory="9" * 400 + "t"), error="resources.memory"),
    Case("config-memory-number", "tiny", DRY, cfg(resources__memory=1e300), error="resources.memory"),
    Case("config-shm-zero", "tiny", DRY, cfg(resources__shm_size="0"), error="resources.shm_size"),
    Case("config-shm-text", "tiny", DRY, cfg(resources__shm_size=[]), error="resources.shm_size"),
    Case("config-gpus-text", "tiny", DRY, cfg(resources__gpus="some"), error="resources.gpus"),
    Case("config-gpus-negative", "tiny", DRY, cfg(resources__gpus=-1), error="resources.gpus"),
    Case("config-gpus-bool", "tiny", DRY, cfg(resources__gpus=True), error="resources.gpus"),
    Case("config-resources-unknown", "tiny", DRY, cfg(resources__cpu=2), error="resources.cpu: unknown field"),
    Case("config-resources-list", "tiny", DRY, cfg(resources=[1]), error="resources"),
    Case("config-seeds-bools", "tiny", DRY, cfg(seeds=[True, False]), error="seeds"),
    Case("config-seeds-float", "tiny", DRY, cfg(seeds=[1.0]), error="seeds"),
    Case("config-seeds-text", "tiny", DRY, cfg(seeds=["0"]), error="seeds"),
    Case("config-seeds-string", "tiny", DRY, cfg(seeds="0,1"), error="seeds"),
    Case("config-seeds-empty", "tiny", DRY, cfg(seeds=[]), error="seeds"),
    Case("config-seeds-repeated", "tiny", DRY, cfg(seeds=[1, 1]), error="seeds"),
    Case("config-seeds-negative", "tiny", DRY, cfg(seeds=[-1]), error="seeds"),
    Case("config-seeds-huge", "tiny", DRY, cfg(seeds=[10**30]), error="seeds"),
    Case("config-epochs-bool", "tiny", DRY, cfg(epochs=True), error="epochs"),
    Case("config-epochs-float", "tiny", DRY, cfg(epochs=1.5), error="epochs"),
    Case("config-epochs-zero", "tiny", DRY, cfg(epochs=0), error="epochs"),
    Case("config-epochs-text", "tiny", DRY, cfg(epochs="2"), error="epochs"),
    Case("config-batch-size-negative", "tiny", DRY, cfg(batch_size=-32), error="batch_size"),
    Case("config-batch-size-huge", "tiny", DRY, cfg(batch_size=10**30), error="batch_size"),
    Case("config-interval-zero", "tiny", DRY, cfg(sampling_interval=0), error="sampling_interval"),
    Case("config-interval-nan", "tiny", DRY, cfg(sampling_interval=float("nan")), error="NaN"),
    Case("config-network", "tiny", DRY, cfg(network="wifi"), error="network"),
    Case("config-framework", "tiny", DRY, cfg(framework="jax"), error="framework"),
    Case("config-competition-dotdot", "tiny", DRY, cfg(competition="../x"), error="competition"),
    Case("config-competition-slash", "tiny", DRY, cfg(competition="a/b"), error="competition"),
    Case("config-competition-300", "tiny", DRY, cfg(competition=LONG), error="competition"),
    Case("config-competition-nul", "tiny", DRY, cfg(competition="a\x00b"), error="competition"),
    Case("config-competition-missing", "tiny", DRY, cfg(competition=DELETE), error="competition: is required"),
    Case("config-modes-empty", "tiny", DRY, cfg(modes={}), error="modes"),
    Case("config-modes-list", "tiny", DRY, cfg(modes=["baseline"]), error="modes"),
    Case("config-mode-dotdot", "tiny", DRY, cfg(modes={"..": "baseline.py"}), error="modes"),
    Case("config-mode-slash", "tiny", DRY, cfg(modes={"a/b": "baseline.py"}), error="modes"),
    Case("config-mode-300", "tiny", DRY, cfg(modes={LONG: "baseline.py"}), error="modes"),
    Case("config-mode-nul", "tiny", DRY, cfg(modes={"a\x00b": "baseline.py"}), error="modes"),
    Case("config-mode-reserved", "tiny", DRY, cfg(modes={"plans": "baseline.py"}), error="modes"),
    Case("config-mode-all", "tiny", DRY, cfg(modes={"all": "baseline.py"}), error="modes"),
    Case("config-script-absolute", "tiny", DRY, cfg(modes={"baseline": "/etc/evil.py"}), error="modes"),
    Case("config-script-dotdot", "tiny", DRY, cfg(modes={"baseline": "../evil.py"}), error="modes"),
    Case("config-script-not-py", "tiny", DRY, cfg(modes={"baseline": "run.sh"}), error="modes"),
    Case("config-script-number", "tiny", DRY, cfg(modes={"baseline": 5}), error="modes"),
    Case("config-script-nul", "tiny", DRY, cfg(modes={"baseline": "a\x00.py"}), error="modes"),
    Case("config-script-missing", "tiny", DRY, _remove("baseline.py"), error="baseline.py"),
    Case("config-script-is-folder", "tiny", DRY, _make_dir("baseline.py"), error="baseline.py"),
    Case("config-data-dir-absolute", "tiny", DRY, cfg(data_dir="/etc"), error="data_dir"),
    Case("config-data-dir-dotdot", "tiny", DRY, cfg(data_dir="../data"), error="data_dir"),
    Case("config-data-dir-nul", "tiny", DRY, cfg(data_dir="a\x00b"), error="data_dir"),
    Case("config-schema-newer", "tiny", DRY, cfg(schema_version=99), error="schema_version"),
    Case("config-schema-zero", "tiny", DRY, cfg(schema_version=0), error="schema_version"),
    Case("config-schema-bool", "tiny", DRY, cfg(schema_version=True), error="schema_version"),
    Case("config-schema-text", "tiny", DRY, cfg(schema_version="1"), error="schema_version"),
    Case("config-unknown-field", "tiny", DRY, cfg(epohcs=3), error="epohcs: unknown field"),
    Case("config-parameters-list", "tiny", DRY, cfg(parameters=[1]), error="parameters"),
    Case("config-parameters-nan", "tiny", DRY, cfg(parameters={"lr": float("nan")}), error="NaN"),
    Case("config-base-image-number", "tiny", DRY, cfg(base_image=5), error="base_image"),
    Case("config-pids-zero", "tiny", DRY, cfg(resources__pids=0), error="resources.pids"),
    Case("config-pids-negative", "tiny", DRY, cfg(resources__pids=-1), error="resources.pids"),
    Case("config-pids-bool", "tiny", DRY, cfg(resources__pids=True), error="resources.pids"),
    Case("config-pids-float", "tiny", DRY, cfg(resources__pids=1.5), error="resources.pids"),
]

FLAG_CASES = [
    Case("flag-cpus-nan", "tiny", (*RUN, "baseline", "--cpus", "nan"), error="--cpus"),
    Case("flag-cpus-inf", "tiny", (*RUN, "baseline", "--cpus", "inf"), error="--cpus"),
    Case("flag-cpus-neg-inf", "tiny", (*RUN, "baseline", "--cpus", "-inf"), error="--cpus"),
    Case("flag-cpus-1e300", "tiny", (*RUN, "baseline", "--cpus", "1e300"), error="--cpus"),
    Case("flag-cpus-beyond-host", "tiny", (*RUN, "baseline", "--cpus", "4096"), error="--cpus"),
    Case("flag-cpus-zero", "tiny", (*RUN, "baseline", "--cpus", "0"), error="--cpus"),
    Case("flag-cpus-text", "tiny", (*RUN, "baseline", "--cpus", "two"), error="--cpus"),
    Case("flag-memory-tiny", "tiny", (*RUN, "baseline", "--memory", "1k"), error="--memory"),
    Case("flag-memory-5m", "tiny", (*RUN, "baseline", "--memory", "5m"), error="--memory"),
    Case("flag-memory-huge", "tiny", (*RUN, "baseline", "--memory", "9" * 400), error="--memory"),
    Case("flag-memory-text", "tiny", (*RUN, "baseline", "--memory", "lots"), error="--memory"),
    Case("flag-shm-zero", "tiny", (*RUN, "baseline", "--shm-size", "0"), error="--shm-size"),
    Case("flag-pids-zero", "tiny", (*RUN, "baseline", "--pids", "0"), error="--pids"),
    Case("flag-pids-text", "tiny", (*RUN, "baseline", "--pids", "many"), error="--pids"),
    Case("flag-gpus-text", "tiny", (*RUN, "baseline", "--gpus", "some"), error="--gpus"),
    Case("flag-timeout-nan", "tiny", (*RUN, "baseline", "--timeout", "nan"), error="--timeout"),
    Case("flag-timeout-inf", "tiny", (*RUN, "baseline", "--timeout", "inf"), error="--timeout"),
    Case("flag-timeout-zero", "tiny", (*RUN, "baseline", "--timeout", "0"), error="--timeout"),
    Case("flag-timeout-negative", "tiny", (*RUN, "baseline", "--timeout", "-5"), error="--timeout"),
    Case("flag-timeout-1e300", "tiny", (*RUN, "baseline", "--timeout", "1e300"), error="--timeout"),
    Case("flag-seeds-letters", "tiny", (*RUN, "baseline", "--seeds", "a,b"), error="--seeds"),
    Case("flag-seeds-repeated", "tiny", (*RUN, "baseline", "--seeds", "1,1"), error="--seeds"),
    Case("flag-seeds-negative", "tiny", (*RUN, "baseline", "--seeds", "-1"), error="--seeds"),
    Case("flag-seeds-float", "tiny", (*RUN, "baseline", "--seeds", "1.5"), error="--seeds"),
    Case("flag-seeds-true", "tiny", (*RUN, "baseline", "--seeds", "true"), error="--seeds"),
    Case("flag-seeds-huge", "tiny", (*RUN, "baseline", "--seeds", "9" * 40), error="--seeds"),
    Case("flag-seeds-empty", "tiny", (*RUN, "baseline", "--seeds", ","), error="--seeds"),
    Case("flag-seeds-blank", "tiny", (*RUN, "baseline", "--seeds", " "), error="--seeds"),
    Case("flag-ipc", "tiny", (*RUN, "baseline", "--ipc", "shareable"), error="--ipc"),
    Case("flag-noise-band-1e400", "results", (*COMPARE, "--noise-band", "1e400"), error="--noise-band"),
    Case("flag-backend", "tiny", ("run", "baseline", "-e", "{exp}", "--backend", "podman"), error="--backend"),
    Case("flag-network", "tiny", (*RUN, "baseline", "--network", "wifi"), error="--network"),
    Case("flag-executor", "tiny", (*RUN, "baseline", "--executor", "slurm"), error="--executor"),
    Case("flag-address-without-ray", "tiny", (*RUN, "baseline", "--address", "10.0.0.1:6379"), error="--address"),
    Case("flag-resume-with-modes", "state", (*RESUME, "baseline"), error="--resume"),
    Case("flag-no-modes", "tiny", RUN, error="name at least one mode"),
    Case("flag-unknown-option", "tiny", (*RUN, "baseline", "--cpu", "2"), error="No such option"),
    Case("flag-noise-band-nan", "results", (*COMPARE, "--noise-band", "nan"), error="--noise-band"),
    Case("flag-noise-band-inf", "results", (*COMPARE, "--noise-band", "inf"), error="--noise-band"),
    Case("flag-noise-band-negative", "results", (*COMPARE, "--noise-band", "-1"), error="--noise-band"),
    Case("flag-noise-band-200", "results", (*COMPARE, "--noise-band", "200"), error="--noise-band"),
    Case("flag-format", "results", (*COMPARE, "--format", "yaml"), error="--format"),
    Case("flag-same-modes", "results", (*COMPARE, "--candidate", "baseline"), error="both"),
    Case("flag-compare-unknown-mode", "results", (*COMPARE, "--candidate", "turbo"), error="no completed run"),
    Case("clean-extra-argument", "tiny", ("clean", "everything"), error="unexpected extra argument"),
    Case("clean-unknown-option", "tiny", ("clean", "--force"), error="No such option"),
    Case("unknown-command", "tiny", ("frobnicate",), error="No such command"),
]

RESULTS_CASES = [
    Case("results-dt-nan", "results", COMPARE, batch_time(float("nan")), error="no completed run"),
    Case("results-dt-inf", "results", COMPARE, batch_time(float("inf")), error="no completed run"),
    Case("results-dt-negative", "results", COMPARE, batch_time(-0.5), error="no completed run"),
    Case("results-dt-1e308", "results", COMPARE, batch_time(1e308), error="no completed run"),
    Case("results-dt-string", "results", COMPARE, batch_time("fast"), error="no completed run"),
    Case("results-dt-null", "results", COMPARE, batch_time(None), error="no completed run"),
    Case("results-dt-bool", "results", COMPARE, batch_time(True), error="no completed run"),
    Case("results-wall-time-string", "results", COMPARE, result(run__wall_time="long"), error="no completed run"),
    Case("results-wall-time-negative", "results", COMPARE, result(run__wall_time=-3), error="no completed run"),
    Case("results-wall-time-nan", "results", COMPARE, result(run__wall_time=float("nan")),
         error="no completed run"),
    Case("results-not-json", "results", COMPARE, result_text("{ cut"), error="no completed run"),
    Case("results-empty", "results", COMPARE, result_text(""), error="no completed run"),
    Case("results-binary", "results", COMPARE, result_text(b"\xff\xfe\x00garbage"), error="no completed run"),
    Case("results-list", "results", COMPARE, result_text("[]"), error="no completed run"),
    Case("results-deep", "results", COMPARE, result_text(DEEP), error="no completed run"),
    Case("results-newer-schema", "results", COMPARE, result(schema_version=99), error="no completed run"),
    Case("results-status-bogus", "results", COMPARE, result(run__status="great"), error="no completed run"),
    Case("results-run-list", "results", COMPARE, result(run=[1]), error="no completed run"),
    Case("results-modes-missing", "results", COMPARE, result(modes=DELETE), error="no completed run"),
    Case("results-batch-times-string", "results", COMPARE, result(modes__optimization__batch_times="x"),
         error="no completed run"),
    Case("results-batch-pairs-flat", "results", COMPARE, result(modes__optimization__batch_times=[1, 2, 3]),
         error="no completed run"),
    Case("results-seed-bool", "results", COMPARE, result(run__seed=True), error="no completed run"),
    Case("results-is-folder", "results", COMPARE,
         lambda exp: _make_dir(str(next((exp / "results/optimization").iterdir()).relative_to(exp))
                               + "/results.json")(exp), error="no completed run"),
    Case("results-mode-is-file", "results", COMPARE,
         lambda exp: (_remove_tree(exp / "results" / "optimization"),
                      (exp / "results" / "optimization").write_text("not a folder\n")), error="no completed run"),
    Case("events-garbage", "results", COMPARE, events_only(["garbage", "{", "[1,2]"]), error="no completed run"),
    Case("events-dt-nan", "results", COMPARE, events_only(_events_completed(float("nan"))), error="no completed run"),
    Case("events-dt-negative", "results", COMPARE, events_only(_events_completed(-1.0)), error="no completed run"),
    Case("events-dt-string", "results", COMPARE, events_only(_events_completed("x")), error="no completed run"),
    Case("events-deep", "results", COMPARE, events_only([DEEP]), error="no completed run"),
    Case("report-html-is-folder", "results", (*COMPARE[:2],), _make_dir("results/comparison/report.html"),
         error="report.html"),
    Case("comparison-json-is-folder", "results", COMPARE, _make_dir("results/comparison/comparison.json"),
         error="comparison.json"),
]


def _run(i: int, **changes: Any) -> Mutate:
    return state(**{f"runs__{i}__{k}": v for k, v in changes.items()})


STATE_CASES = [
    Case("state-not-json", "state", RESUME, state_text("{ cut"), error="state.json"),
    Case("state-empty", "state", RESUME, state_text(""), error="state.json"),
    Case("state-binary", "state", RESUME, state_text(b"\xff\x00\xfe"), error="state.json"),
    Case("state-list", "state", RESUME, state_text("[]"), error="state.json"),
    Case("state-deep", "state", RESUME, state_text(DEEP), error="nested too deeply"),
    Case("state-is-folder", "state", RESUME, _make_dir(STATE), error="state.json"),
    Case("state-nan", "state", RESUME, state(created=float("nan")), error="NaN"),
    Case("state-version-newer", "state", RESUME, state(state_version=99), error="state_version"),
    Case("state-version-text", "state", RESUME, state(state_version="1"), error="state_version"),
    Case("state-version-missing", "state", RESUME, state(state_version=DELETE), error="state_version"),
    Case("state-unknown-key", "state", RESUME, state(colour="blue"), error="colour: unknown field"),
    Case("state-plan-id-mismatch", "state", RESUME, state(plan_id="../../../outside"), error="plan_id"),
    Case("state-options-cpus-text", "state", RESUME, state(options__cpus="x"), error="options.cpus"),
    Case("state-options-cpus-nan", "state", RESUME, state(options__cpus=float("nan")), error="NaN"),
    Case("state-options-timeout-negative", "state", RESUME, state(options__timeout=-5), error="options.timeout"),
    Case("state-options-backend", "state", (*RESUME[:4],), state(options__backend="foo"), error="options.backend"),
    Case("state-options-memory", "state", RESUME, state(options__memory="1k"), error="options.memory"),
    Case("state-options-unknown", "state", RESUME, state(options__turbo=True), error="options.turbo"),
    Case("state-options-list", "state", RESUME, state(options=[1]), error="options"),
    Case("state-fingerprints-number", "state", RESUME, state(fingerprints={"baseline": 5}), error="fingerprints"),
    Case("state-fingerprints-no-parts", "state", RESUME, state(fingerprints={"baseline": {"hash": "ab12cd34", "version": 1}}),
         error="fingerprints.baseline.parts"),
    Case("state-fingerprints-outside", "state", RESUME, state(fingerprints={"../x": {}}), error="fingerprints"),
    Case("state-fingerprints-other-mode", "state", RESUME,
         state(fingerprints={"turbo": {"hash": "ab12cd34", "version": 1, "parts": {"command": [], "code": {},
                                                                                  "config": {}, "settings": {},
                                                                                  "runtime": {}}}}),
         error="fingerprints"),
    Case("state-options-pids-zero", "state", RESUME, state(options__pids=0), error="options.pids"),
    Case("state-options-pids-text", "state", RESUME, state(options__pids="x"), error="options.pids"),
    Case("state-modes-string", "state", RESUME, state(modes="x"), error="modes"),
    Case("state-modes-dotdot", "state", RESUME, state(modes=["../x"]), error="modes"),
    Case("state-modes-unknown", "state", RESUME, state(modes=["turbo"]), error="turbo"),
    Case("state-seeds-bool", "state", RESUME, state(seeds=[True]), error="seeds"),
    Case("state-seeds-string", "state", RESUME, state(seeds="0"), error="seeds"),
    Case("state-runs-string", "state", RESUME, state(runs="x"), error="runs"),
    Case("state-runs-items", "state", RESUME, state(runs=[1, 2]), error="runs"),
    Case("state-runs-empty", "state", RESUME, state(runs=[]), error="runs"),
    Case("state-run-seed-not-in-plan", "state", RESUME, _run(0, seed=7), error="seed"),
    Case("state-executor", "state", RESUME, state(executor="slurm"), error="executor"),
    Case("state-parallel-text", "state", RESUME, state(parallel="yes"), error="parallel"),
    Case("state-run-id-outside", "state", RESUME, _run(0, status="running", run_id="../../../outside"),
         error="run_id"),
    Case("state-run-id-absolute", "state", RESUME,
         lambda exp: _run(0, status="running", run_id=str(exp.parent.parent / "outside"))(exp), error="run_id"),
    Case("state-run-id-slash", "state", RESUME, _run(0, status="running", run_id="a/b"), error="run_id"),
    Case("state-run-id-nul", "state", RESUME, _run(0, status="running", run_id="a\x00b"), error="run_id"),
    Case("state-run-id-300", "state", RESUME, _run(0, status="running", run_id=LONG), error="run_id"),
    Case("state-run-id-dot", "state", RESUME, _run(0, status="running", run_id="."), error="run_id"),
    Case("state-run-mode-outside", "state", RESUME, _run(0, status="running", mode="../../.."), error="mode"),
    Case("state-run-mode-unknown", "state", RESUME, _run(0, mode="turbo"), error="turbo"),
    Case("state-run-seed-bool", "state", RESUME, _run(0, seed=True), error="seed"),
    Case("state-run-seed-text", "state", RESUME, _run(0, seed="0"), error="seed"),
    Case("state-run-seed-negative", "state", RESUME, _run(0, seed=-1), error="seed"),
    Case("state-run-seed-float", "state", RESUME, _run(0, seed=0.5), error="seed"),
    Case("state-run-status", "state", RESUME, _run(0, status="great"), error="status"),
    Case("state-run-attempts-text", "state", RESUME, _run(0, attempts="x"), error="attempts"),
    Case("state-run-wall-time-text", "state", RESUME, _run(0, wall_time="long"), error="wall_time"),
    Case("state-run-previous-string", "state", RESUME, _run(0, previous_run_ids="x"), error="previous_run_ids"),
    Case("state-run-previous-outside", "state", RESUME, _run(0, previous_run_ids=["../../x"]),
         error="previous_run_ids"),
    Case("state-run-unknown-key", "state", RESUME, _run(0, colour="blue"), error="colour: unknown field"),
    Case("state-run-incomplete-number", "state", RESUME, _run(0, results_incomplete=5), error="results_incomplete"),
    Case("state-run-not-object", "state", RESUME, state(runs__0="x"), error="runs.0"),
    Case("state-run-missing-mode", "state", RESUME, _run(0, mode=DELETE), error="mode"),
]

# The "no image left behind" cases: the Docker backend, inputs that must be refused before a build.
DOCKER_CASES = [
    Case("docker-script-missing", "tiny", ("run", "baseline", "-e", "{exp}", "--backend", "docker"),
         _remove("baseline.py"), error="baseline.py", docker=True),
    Case("docker-cpus-beyond-host", "tiny", ("run", "baseline", "-e", "{exp}", "--backend", "docker", "--cpus",
                                              "4096"), error="--cpus", docker=True),
    Case("docker-memory-below-floor", "tiny", ("run", "baseline", "-e", "{exp}", "--backend", "docker",
                                                "--memory", "4m"), error="--memory", docker=True),
    Case("docker-config-cpus-beyond-host", "tiny", ("run", "baseline", "-e", "{exp}", "--backend", "docker"),
         cfg(resources__cpus=512), error="resources.cpus", docker=True),
]

CASES = NAME_CASES + CONFIG_CASES + FLAG_CASES + RESULTS_CASES + STATE_CASES + DOCKER_CASES


def valid_state(exp: Path) -> dict[str, Any]:
    """A plan state as ``harness run`` writes it: both runs of seed 0 completed."""
    options = {"backend": "local", "gpus": None, "cpus": None, "memory": None, "shm_size": None, "network": None,
               "ipc": "private", "timeout": None, "rebuild": False}
    runs = [{"mode": mode, "seed": 0, "status": "completed", "run_id": run_id, "attempts": 1,
             "started": 1705312200.0 + 60 * k, "ended": 1705312230.0 + 60 * k, "message": "", "wall_time": 30.0,
             "backend": "local", "node": None, "gpus": [], "cpuset": None, "previous_run_ids": []}
            for k, (mode, run_id) in enumerate(zip(("baseline", "optimization"), RUN_IDS))]
    return {"plan_id": PLAN_ID, "experiment": NAME, "experiment_dir": str(exp), "created": 1705312200.0,
            "modes": ["baseline", "optimization"], "seeds": [0], "options": options, "runs": runs,
            "parallel": False, "executor": "local", "address": None, "fail_fast": False, "state_version": 1}


def fill(argv: tuple[str, ...], tmp: Path, parent: Path, exp: Path) -> list[str]:
    return [a.replace("{exp}", str(exp)).replace("{parent}", str(parent)).replace("{tmp}", str(tmp))
            .replace("{outside}", str(tmp / "outside")) for a in argv]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
