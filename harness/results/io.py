"""Reading and writing result files: one atomic writer, one loader, one way to change a finished run.

Every file harness writes for a reader (results.json, state.json, reports, the compare cache)
goes through :func:`write_atomic`, so a reader sees the old file or the whole new one, never
half, and every such file gets the same mode (0644 under the usual umask). Every host-side
change to a finished run's results.json goes through :func:`update_run`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import ResultsError
from harness.results.events import sanitise
from harness.filemode import new_file_mode
from harness.results.schema import EVENTS_FILENAME, RESULTS_FILENAME, validate_results

def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never half.

    The file gets the mode a plain ``open()`` would give it (0666 less the umask): mkstemp's
    0600 would hide results and reports from the other users of a shared machine.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fchmod(f.fileno(), new_file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def json_default(value: Any) -> Any:
    """``json.dumps``' ``default`` for what reaches us from user code and aggregates: numpy scalars, paths."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented, strict JSON (no NaN), written by :func:`write_atomic`."""
    text = json.dumps(data, indent=1, allow_nan=False, default=json_default)
    write_atomic(Path(path), text + "\n")


def write_results(run_dir: Path, data: dict[str, Any]) -> Path:
    """Write a run's results.json (NaN and infinities become null); the one writer of that file.

    Its columnar twin (``results.columnar``: the per-batch arrays, named by this file's digest) is
    written beside it every time, so every rewrite keeps the two in step; without numpy (an image
    that lacks it) or on a write error there is no twin, and readers use results.json.
    """
    path = Path(run_dir) / RESULTS_FILENAME
    clean = sanitise(data)
    write_json_atomic(path, clean)
    try:
        from harness.results.columnar import write_quietly  # numpy: imported only when a run ends
    except ImportError:
        return path
    write_quietly(Path(run_dir), clean)
    return path


def load_results_file(path: Path) -> dict[str, Any]:
    """Read and check one results.json.

    Raises:
        ResultsError: when the file is missing, cut short, not JSON, or not a harness results file.
    """
    from harness.nofollow import NotARegularFile, read_bytes
    from harness.safe_json import JsonInputError, parse

    try:
        raw = read_bytes(path)  # the run folder is the run's to write: a link is never followed
    except FileNotFoundError as e:
        raise ResultsError(path, "not found") from e
    except NotARegularFile as e:
        raise ResultsError(path, f"is not a file ({e.strerror})") from e
    except OSError as e:
        raise ResultsError(path, f"cannot be read ({e.strerror or e.__class__.__name__})") from e
    try:
        # Strict JSON (the writer sanitises NaN to null); deep nesting is the parser's RecursionError,
        # caught there: a depth walk would cost more than the parse on long runs.
        data = parse(raw, allow_nan=False, max_depth=None)
    except JsonInputError as e:
        hint = None if e.kind == "empty" else "delete the run folder, or run it again"
        raise ResultsError(path, str(e), hint=hint) from None
    validate_results(data, path)
    return data


def load_or_rebuild(run_dir: Path) -> dict[str, Any]:
    """A run's results document: its results.json, else rebuilt from its events.jsonl.

    Raises:
        ResultsError: when neither gives a document.
    """
    from harness.results.build import rebuild_from_events

    run_dir = Path(run_dir)
    try:
        return load_results_file(run_dir / RESULTS_FILENAME)
    except ResultsError:
        if not (run_dir / EVENTS_FILENAME).is_file():
            raise
    return rebuild_from_events(run_dir)


def update_run(run_dir: Path, *, base: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """Set ``run.<field>`` for each keyword in a run's results.json and rewrite it atomically.

    The one way the host side changes a run after its agent wrote it. ``base`` is the document
    to start from when the caller already holds one (rebuilt, or made for a run whose agent
    wrote nothing); otherwise results.json is read, or rebuilt from events.jsonl.

    Raises:
        ResultsError: when there is no document to update.
    """
    data = base if base is not None else load_or_rebuild(run_dir)
    data.setdefault("run", {}).update(fields)
    write_results(run_dir, data)
    return data
