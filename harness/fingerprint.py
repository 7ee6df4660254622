"""A run's identity: what ran, hashed, with the parts kept so that a difference can be named.

``harness compare`` pools only runs of one fingerprint per mode (issue 10): the runs of a mode
made before ``optimization.py`` was edited measure other code, and pooling them gave wrong
verdicts without a word. The parts are kept beside the hash, so compare can say *what*
differs ("optimization.py changed", "image differs", "--cpus 2 vs 4").

The parts (docs/statistics.md, "Which runs are compared"):

* ``command``: the command the agent runs, with the interpreter written ``python`` and paths
  inside the experiment made relative, so both backends write the same command for one mode.
* ``code``: relative path -> sha256 of the experiment's code (:func:`harness.code.code_digests`,
  the definition the image hash uses), less ``experiment_config.json`` (its resolved content is
  the ``config`` part) and documentation. Bytes are hashed: an edit to a comment counts.
* ``config``: the resolved experiment config, less what does not change a run (the seed list,
  other modes, what only compare reads).
* ``settings``: the resolved run settings (backend, cpus, memory, shm size, GPUs, network, IPC,
  timeout, pids).
* ``runtime``: the image id (Docker), or the interpreter and framework versions (local).

Computed on the host before each run (``harness.backends.identity``) and handed to the agent,
which records it in ``run_start`` and results.json (``run.fingerprint``). This module imports
nothing host-side: the agent reads the fingerprint with it inside the container.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, MutableMapping

from harness.env import FINGERPRINT as ENV_VAR

FINGERPRINT_VERSION = 1
# Config keys that never change what a run does: which seeds a plan makes, and what compare reads.
CONFIG_KEYS_IGNORED = frozenset({"seeds", "primary_metric", "quality_metric"})
# Files of the experiment folder that are not code a run executes.
DOC_SUFFIXES = (".md", ".rst")
NOT_CODE_NAMES = frozenset({"experiment_config.json", ".gitignore", "LICENSE"})
SETTING_FLAGS = {"backend": "--backend", "cpus": "--cpus", "memory": "--memory", "shm_size": "--shm-size",
                 "gpus": "--gpus", "network": "--network", "ipc": "--ipc", "timeout": "--timeout",
                 "pids": "--pids"}
_PYTHON_NAMES = ("python", "python3")


def normalise_command(command: Iterable[str], experiment_dir: Path | str | None = None,
                      workdir: str | None = None) -> list[str]:
    """The command as both backends would write it: ``["python", "baseline.py", ...]``.

    The local backend runs ``/path/to/venv/bin/python /abs/exp/baseline.py``, the container
    ``python3 baseline.py`` in its work dir; both name the same thing.
    """
    out: list[str] = []
    roots = [str(r).rstrip("/") + "/" for r in (experiment_dir, workdir) if r]
    for i, arg in enumerate(command):
        arg = str(arg)
        if i == 0 and _is_python(arg):
            out.append("python")
            continue
        for root in roots:
            if arg.startswith(root):
                arg = arg[len(root):]
                break
        out.append(arg)
    return out


def _is_python(program: str) -> bool:
    name = PurePosixPath(program).name
    if name in _PYTHON_NAMES or program == sys.executable:
        return True
    return name.startswith("python3.") and name[len("python3."):].isdigit()  # python3.11 and the like


def run_config(config: dict[str, Any], mode: str) -> dict[str, Any]:
    """The part of a resolved config that can change what ``mode``'s run does."""
    out = {k: v for k, v in config.items() if k not in CONFIG_KEYS_IGNORED and k != "modes"}
    modes = config.get("modes")
    if isinstance(modes, dict) and mode in modes:
        out["mode"] = modes[mode]
    return out


def run_code(digests: dict[str, str]) -> dict[str, str]:
    """Code digests less the files that are not code a run executes (docs, the config file)."""
    out = {}
    for rel, digest in digests.items():
        name = PurePosixPath(rel).name
        if name in NOT_CODE_NAMES or name.lower().endswith(DOC_SUFFIXES):
            continue
        out[rel] = digest
    return dict(sorted(out.items()))


def local_runtime() -> dict[str, Any]:
    """Interpreter and framework versions of this Python (what a local run runs on)."""
    from importlib import metadata

    frameworks = {}
    for dist in ("torch", "tensorflow", "tensorflow-cpu", "jax"):
        try:
            frameworks[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "frameworks": frameworks}


def fingerprint_hash(parts: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of the parts."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_fingerprint(*, command: list[str], code: dict[str, str], config: dict[str, Any],
                     settings: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """``{"hash", "version", "parts"}`` from already-normalised parts."""
    parts = {"command": list(command), "code": dict(sorted(code.items())), "config": config,
             "settings": dict(sorted(settings.items())), "runtime": runtime}
    return {"hash": fingerprint_hash(parts), "version": FINGERPRINT_VERSION, "parts": parts}


# What a machine decides for itself: on Ray each node runs its own image or interpreter, picks
# its backend (auto) and its GPUs. Runs on two machines are the same code when all else agrees.
MACHINE_SETTINGS = ("backend", "gpus")


def identity_keys(fp: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """``(code key, machine key)``: hashes of what the user chose and of what the machine decided.

    On one machine two runs are alike when both keys agree (the fingerprint's hash); across
    machines when the code keys agree (nodes differ in hardware: compare/nodes.py says so).
    """
    if not isinstance(fp, dict):
        return None, None
    parts = fp.get("parts")
    if not isinstance(parts, dict):
        return (fp.get("hash") if isinstance(fp.get("hash"), str) else None), None
    settings = parts.get("settings") if isinstance(parts.get("settings"), dict) else {}
    chosen = {**parts, "runtime": None, "settings": {k: v for k, v in settings.items() if k not in MACHINE_SETTINGS}}
    decided = {"runtime": parts.get("runtime"), **{k: settings.get(k) for k in MACHINE_SETTINGS}}
    return fingerprint_hash(chosen), fingerprint_hash(decided)


# --------------------------------------------------------------------------- naming a difference


def differences(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """What differs from ``old`` to ``new``, in words; empty when the hashes agree.

    Examples: ``optimization.py changed``, ``utils.py added``, ``--cpus 2 vs 4``,
    ``epochs 2 vs 3``, ``image differs``, ``torch 2.3.0 vs 2.4.1``.
    """
    if old is None and new is None:
        return []
    if old is None or new is None:
        return ["no fingerprint recorded (run made by an older harness)"]
    if old.get("hash") == new.get("hash"):
        return []
    po, pn = old.get("parts") or {}, new.get("parts") or {}
    out = _code_differences(po.get("code") or {}, pn.get("code") or {})
    if po.get("command") != pn.get("command"):
        out.append(f"command {_cmd(po.get('command'))!r} vs {_cmd(pn.get('command'))!r}")
    out += _settings_differences(po.get("settings") or {}, pn.get("settings") or {})
    out += _value_differences(_flatten(po.get("config") or {}), _flatten(pn.get("config") or {}))
    out += _runtime_differences(po.get("runtime") or {}, pn.get("runtime") or {}, code_differs=bool(out))
    return out or ["fingerprint differs"]


def _cmd(command: Any) -> str:
    return " ".join(command) if isinstance(command, list) else str(command)


def _code_differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    changed = sorted(p for p in set(old) & set(new) if old[p] != new[p])
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    out = []
    for paths, word in ((changed, "changed"), (added, "added"), (removed, "removed")):
        if paths:
            shown = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
            out.append(f"{shown} {word}")
    return out


def _settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            show = _size if key in ("memory", "shm_size") else _show
            out.append(f"{SETTING_FLAGS.get(key, key)} {show(old.get(key))} vs {show(new.get(key))}")
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _value_differences(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> list[str]:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    out = [f"{k} {_show(old.get(k))} vs {_show(new.get(k))}" for k in keys[:limit]]
    if len(keys) > limit:
        out.append(f"{len(keys) - limit} more config value(s)")
    return out


def _runtime_differences(old: dict[str, Any], new: dict[str, Any], code_differs: bool) -> list[str]:
    out = []
    if old.get("image_id") != new.get("image_id") and (old.get("image_id") or new.get("image_id")):
        # An image holds the code: when the code changed, a new image says nothing more.
        if not code_differs or not (old.get("image_id") and new.get("image_id")):
            out.append("image differs" if old.get("image_id") and new.get("image_id")
                       else "image vs local interpreter")
    if old.get("python") != new.get("python") and old.get("python") and new.get("python"):
        out.append(f"Python {old['python']} vs {new['python']}")
    fo, fn = old.get("frameworks") or {}, new.get("frameworks") or {}
    for name in sorted(set(fo) | set(fn)):
        if fo.get(name) != fn.get(name):
            out.append(f"{name} {_show(fo.get(name))} vs {_show(fn.get(name))}")
    return out


def _size(value: Any) -> str:
    """Bytes as a Docker-style size (8g, 512m); anything else as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        for suffix, factor in (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024)):
            if value % factor == 0:
                return f"{value // factor}{suffix}"
    return _show(value)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def take_from_env(environ: MutableMapping[str, str]) -> dict[str, Any] | None:
    """The fingerprint the backend handed over, removed from ``environ`` (the script need not see it)."""
    found = from_env(environ)
    environ.pop(ENV_VAR, None)
    return found


def from_env(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The fingerprint the backend handed to the agent, or None (absent or not JSON)."""
    text = environ.get(ENV_VAR)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("hash"), str) else None
