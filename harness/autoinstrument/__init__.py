"""Per-step timing for scripts that do not use ``harness.monitor``: hooks installed from outside.

The agent puts :func:`bootstrap_dir` first on the ``PYTHONPATH`` of the script's process (and of
nothing else); Python imports the ``sitecustomize`` module there at start-up, which calls
:func:`install`. That only puts a finder on ``sys.meta_path``: the framework hooks are installed
when the script itself imports ``torch`` (:mod:`.torch_hooks`) or ``keras`` (:mod:`.keras_hooks`),
so a script that uses neither pays nothing. When the script makes its own
:class:`~harness.monitor.ExperimentMonitor`, the hooks step aside (no batch is counted twice).

Off with ``HARNESS_AUTO_INSTRUMENT=0`` in the agent's environment or ``"instrument": false`` in the
mode. Nothing here imports torch, TensorFlow or anything host-side.
"""

from __future__ import annotations

import os
import sys

# This module is imported at the start-up of every instrumented process: standard modules that
# Python has not loaded by then (typing, pathlib, functools, importlib.abc) cost milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

from harness.env import AUTO_INSTRUMENT as SWITCH  # "0": no automatic step timing

_installed = False


def bootstrap_dir() -> str:
    """The folder holding the ``sitecustomize`` bootstrap (inside this package, wherever installed)."""
    return os.path.join(os.path.dirname(os.path.realpath(__file__)), "boot")


def enabled(env: dict[str, str] | None = None) -> bool:
    """Whether ``HARNESS_AUTO_INSTRUMENT`` leaves automatic timing on (anything but 0/false/no/off)."""
    value = (os.environ if env is None else env).get(SWITCH, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the bootstrap first on ``PYTHONPATH`` (the bootstrap takes itself off again)."""
    out = dict(env)
    rest = out.get("PYTHONPATH")
    out["PYTHONPATH"] = bootstrap_dir() + (os.pathsep + rest if rest else "")
    return out


def _report(where: str, exc: BaseException) -> None:
    from harness.autoinstrument.recorder import get_recorder

    recorder = get_recorder()
    if recorder is not None:
        recorder.fail(f"installing the {where} hooks", exc)


def _on_torch(torch: ModuleType) -> None:
    from harness.autoinstrument import torch_hooks
    from harness.autoinstrument.recorder import get_recorder

    recorder = get_recorder()
    if recorder is not None and recorder.on:
        torch_hooks.install(torch, recorder)


def _on_keras(keras: ModuleType) -> None:
    from harness.autoinstrument import keras_hooks
    from harness.autoinstrument.recorder import get_recorder

    recorder = get_recorder()
    if recorder is not None and recorder.on and hasattr(keras, "Model"):
        keras_hooks.install(keras, recorder)


def _monitor_created() -> None:
    from harness.autoinstrument.recorder import get_recorder

    recorder = get_recorder()
    if recorder is not None and not recorder.creating_monitor:
        recorder.step_aside()


def _on_monitor_module(module: ModuleType) -> None:
    """Wrap ``ExperimentMonitor.__init__``: a monitor the script makes turns the hooks off."""
    import functools

    cls = module.ExperimentMonitor
    original: Callable[..., None] = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _monitor_created()

    cls.__init__ = __init__


def install() -> None:
    """Called by the bootstrap: watch for the frameworks' imports (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    from harness.autoinstrument.importwatch import watch

    watch({"torch": _on_torch, "keras": _on_keras, "harness.monitor.experiment": _on_monitor_module},
          on_error=_report)


def strip_bootstrap(here: str) -> None:
    """Take the bootstrap off ``sys.path`` and ``PYTHONPATH``: processes the script starts run bare."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != here]
    if parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        os.environ.pop("PYTHONPATH", None)
