"""harness's automatic step timing: the agent puts this folder first on the script's PYTHONPATH.

Python imports ``sitecustomize`` at start-up. This one takes its folder off ``sys.path`` and
``PYTHONPATH`` (processes the script starts run bare), installs harness's import watcher
(``harness.autoinstrument.install``: hooks go in when the script imports torch or keras), then
runs the environment's own ``sitecustomize``, if there is one, as if this file were not here.
Nothing here may stop the script: a failure prints one line on stderr.
"""

import os
import sys


def _boot() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        from harness.autoinstrument import enabled, install, strip_bootstrap

        strip_bootstrap(here)
        if enabled() and os.environ.get("HARNESS_EVENTS_FILE"):
            install()
    except Exception as e:  # harness not importable by this interpreter, or a bug of ours
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        print(f"harness: automatic step timing is off ({type(e).__name__}: {e})", file=sys.stderr)
    ours = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the environment's own, found now that we are off the path)
    except ModuleNotFoundError as e:
        if e.name != "sitecustomize":
            raise
        if ours is not None:
            sys.modules["sitecustomize"] = ours


_boot()
