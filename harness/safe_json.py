"""Parse JSON that people and programs edit, so that whatever is in it becomes one line of error.

harness reads files it does not control the content of: a teammate's hand edit, a half-synced
folder, a crashed writer or a hostile script can leave anything there. ``json.loads`` alone
lets through ``NaN``/``Infinity`` (not JSON, and impossible in our numbers), turns ``1e400`` into
``inf``, raises ``RecursionError`` on deep nesting and ``UnicodeDecodeError`` on bytes that are not
UTF-8. :func:`parse` turns each of these into a :class:`JsonInputError` with a short message;
callers wrap it in their own error type with the file's name.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any file harness writes (results.json is 6 levels); deep enough for free-form
# "parameters". Checked on small files; on big ones the parser's own limit applies.
MAX_DEPTH = 64


class JsonInputError(ValueError):
    """Raised when text is not JSON harness can use; the message is one line without the file name.

    ``kind`` is ``encoding``, ``empty``, ``cut``, ``syntax``, ``number`` or ``depth``; ``detail``
    is the parser's own words for ``cut`` and ``syntax`` (e.g. "Expecting value at line 1 column 2").
    """

    def __init__(self, message: str, kind: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


class _BadNumber(Exception):
    pass


def _no_constants(name: str) -> Any:
    raise _BadNumber(f"holds {name}, which is not valid JSON (NaN and Infinity are not numbers JSON allows)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"holds the number {text[:40]}, which is out of range")
    return value


def parse(raw: str | bytes, *, allow_nan: bool = False, max_depth: int | None = MAX_DEPTH) -> Any:
    """Parse ``raw`` (text, or bytes that must be UTF-8).

    Args:
        allow_nan: accept ``NaN``/``Infinity`` (only events.jsonl, whose writer keeps them).
        max_depth: refuse containers nested deeper than this; ``None`` leaves it to the parser.

    Raises:
        JsonInputError: not UTF-8, empty, not JSON, a non-finite number, or nested too deeply.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonInputError(f"is not UTF-8 text (byte {e.start})", "encoding") from None
    if not raw.strip():
        raise JsonInputError("is empty", "empty", "Expecting value at line 1 column 1")
    hooks: dict[str, Any] = {} if allow_nan else {"parse_constant": _no_constants, "parse_float": _finite_float}
    try:
        data = json.loads(raw, **hooks)
    except json.JSONDecodeError as e:
        if e.pos >= len(raw.rstrip()) - 1:
            raise JsonInputError(f"is cut short ({e.msg} at line {e.lineno})", "cut",
                                 f"{e.msg} at line {e.lineno} column {e.colno}") from None
        raise JsonInputError(f"is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", "syntax",
                             f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise JsonInputError("is nested too deeply to be a harness file", "depth") from None
    except _BadNumber as e:
        raise JsonInputError(str(e), "number") from None
    if max_depth is not None:
        check_depth(data, max_depth)
    return data


def check_depth(data: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse containers nested more than ``max_depth`` levels (walked without recursion).

    Raises:
        JsonInputError: naming the limit.
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonInputError(f"is nested too deeply (more than {max_depth} levels)", "depth")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_finite(data: Any) -> None:
    """Refuse NaN and infinities anywhere in parsed JSON, naming where (``resources.cpus``).

    For files parsed with ``allow_nan=True`` so that the error can name the field.

    Raises:
        JsonInputError: ``kind`` "number", the message starting with the dotted path.
    """
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            shown = "NaN" if math.isnan(node) else ("Infinity" if node > 0 else "-Infinity")
            raise JsonInputError(f"{where or '(top level)'}: {shown} is not a number harness accepts "
                                 "(NaN, Infinity and numbers out of range are not valid JSON)", "number")
        if isinstance(node, dict):
            stack.extend((v, f"{where}.{one_line(k, 60)}" if where else one_line(k, 60)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}.{i}" if where else str(i)) for i, v in enumerate(node))


def one_line(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters: for quoting untrusted values in errors."""
    flat = " ".join(repr(text)[1:-1].split()) if isinstance(text, str) else repr(text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
