"""Limits on what a schedule definition may hold, and the text that reaches people.

One set of bounds serves every entry point (CLI, YAML, the Python API, imports), the beat
(rows written by raw SQL) and the database (a CHECK on `schedules`): a value one of them
accepted is never one another refuses later. A JSON column the process cannot read (nested
past what the parser's stack allows) becomes an `Unreadable` marker instead of an exception,
so one row is shown or flagged as broken and every other row is read as usual.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of args, kwargs or options (the top-level array or object is level 0)."""
MAX_JSON_BYTES = 1_000_000
"""Largest args, kwargs or options, and largest args+kwargs+options together, as JSON text."""
MAX_TEXT_CHARS = 100_000
"""Longest result summary, error message or traceback stored for a run."""


@dataclass(frozen=True)
class Unreadable:
    """A JSON value this process could not decode; `reason` says why."""

    reason: str

    def __str__(self) -> str:
        return f"<unreadable: {self.reason}>"


def json_depth(value: Any) -> int:
    """Nesting depth without recursion (a hostile value cannot exhaust the stack here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        for child in children:
            deepest = max(deepest, level + 1)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.append((child, level + 1))
    return deepest


def json_problem(label: str, value: Any) -> str | None:
    """Why `value` may not be stored as `label` (one line), or None when it may."""
    return json_measure(label, value)[0]


def json_measure(label: str, value: Any) -> tuple[str | None, int]:
    """`json_problem` and the size of `value` as JSON text (0 when it cannot be measured)."""
    if isinstance(value, Unreadable):
        return f"{label} cannot be read ({value.reason}): set it again", 0
    if json_depth(value) > MAX_JSON_DEPTH:
        return f"{label} is nested deeper than {MAX_JSON_DEPTH} levels", 0
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        return f"{label} is not JSON: {type(exc).__name__}", 0
    if size > MAX_JSON_BYTES:
        return f"{label} is {size} bytes of JSON: at most {MAX_JSON_BYTES} (1 MB)", size
    return None, size


def safe_loads(text: str) -> Any:
    """A JSON column's value, or `Unreadable` when it cannot be decoded here."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    try:
        value = json.loads(text)
    except RecursionError:
        return Unreadable(f"nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError as exc:
        return Unreadable(f"not JSON: {exc}")
    if (text.count("[") + text.count("{") > MAX_JSON_DEPTH) and json_depth(value) > MAX_JSON_DEPTH:
        return Unreadable(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def min_interval_s() -> float:
    """The shortest interval a schedule may have: `SCHEDULER_MIN_INTERVAL_S`, default 1 s."""
    raw = os.environ.get("SCHEDULER_MIN_INTERVAL_S", "")
    try:
        value = float(raw) if raw.strip() else 1.0
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
SANITISED_MARK = " [sanitised: NUL or invalid characters replaced]"


def plain(text: Any) -> str:
    """`text` safe for a terminal: ANSI escapes and control characters removed (newlines
    and tabs kept), lone surrogates replaced."""
    value = str(text)
    value = _ANSI.sub("", value)
    value = _CONTROL.sub("", value)
    return _SURROGATE.sub("\ufffd", value)


def storable(text: str | None) -> str | None:
    """`text` as PostgreSQL can store it: NUL and lone surrogates replaced by U+FFFD, with a
    marker saying so; longer than `MAX_TEXT_CHARS` cut, with a marker too."""
    if text is None:
        return None
    cleaned = _SURROGATE.sub("\ufffd", text.replace("\x00", "\ufffd"))
    marked = cleaned != text
    if len(cleaned) > MAX_TEXT_CHARS:
        cleaned = cleaned[:MAX_TEXT_CHARS] + " [cut]"
    return cleaned + SANITISED_MARK if marked else cleaned


_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable_json_text(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) that jsonb accepts: escaped NUL
    and raw lone surrogates replaced by U+FFFD."""
    if "\\u0000" in text:
        text = _JSON_NUL.sub(lambda m: m.group(1) + "\\ufffd", text)
    return _SURROGATE.sub("\ufffd", text)
