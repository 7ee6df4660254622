"""The ``events.jsonl`` format: how one record is encoded and how a file of them is read back.

The threaded writer (``harness.monitor.events.EventWriter``) lives with the monitor; the
format lives here, beside results.json's, because the host side reads it too (rebuilds).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _default(value: Any) -> Any:
    # numpy / torch scalars and paths arrive from user code (config dicts, metric values).
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, (Path, set, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    return repr(value)


def encode(record: dict[str, Any]) -> str:
    """One record as one JSON line (NaN stays NaN: Python's reader accepts it; results.json sanitises)."""
    return json.dumps(record, separators=(",", ":"), default=_default) + "\n"


def read_events(path: Path | str) -> tuple[list[dict[str, Any]], int]:
    """Parse ``events.jsonl``; returns the records and how many bad lines were dropped.

    A line that does not parse is dropped (the last one may be cut by a crash); so is a
    line that is not an object.
    """
    from harness.nofollow import open_file

    records: list[dict[str, Any]] = []
    dropped = 0
    # The run folder is writable by the run: never through a link, never blocked by a FIFO.
    with os.fdopen(open_file(path), "rb") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested absurdly deep
                dropped += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("type"), str) and _stamps_ok(record):
                records.append(record)
            else:
                dropped += 1
    return records, dropped


def _stamps_ok(record: dict[str, Any]) -> bool:
    """``t`` and ``m``, where present, are finite numbers (records are ordered and timed by them)."""
    for key in ("t", "m"):
        value = record.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
    return True


def finite(value: Any) -> Any:
    """``None`` for NaN and infinities, so that results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sanitise(value: Any) -> Any:
    """``value`` with every NaN and infinity (at any depth) turned into ``None``; tuples become lists."""
    if isinstance(value, dict):
        return {k: sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitise(v) for v in value]
    return finite(value)
