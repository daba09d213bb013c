"""A schedule definition from what a user sent (a JSON API body or the edit form's JSON):
the JSON type of every field is checked before any of it reaches the definition or the
database, and every problem is a 400 with one line."""

from __future__ import annotations

from typing import Any

from scheduler import api
from scheduler.core.definitions import ScheduleDefinition, from_mapping, validate
from scheduler.web.bridge import call
from scheduler.web.problems import HTTPProblem

_TEXT = ("name", "task", "cron", "timezone", "description", "misfire_policy", "overlap_policy")
_INTEGER = ("max_runs", "misfire_grace_seconds", "jitter_seconds")
_INSTANT = ("run_at", "at", "start_at", "end_at")
INT32 = 2**31 - 1


def _check_types(data: dict[str, Any]) -> None:
    """JSON types per field, before any of it reaches the definition or the database."""
    for key, value in data.items():
        if value is None and key not in ("name", "task"):
            continue
        if key in _TEXT or key in _INSTANT or key == "every":
            ok = isinstance(value, str)
        elif key in _INTEGER:
            ok = isinstance(value, int) and not isinstance(value, bool) and -INT32 <= value <= INT32
        elif key == "interval_seconds":
            ok = isinstance(value, int | float | str) and not isinstance(value, bool)
        elif key == "enabled":
            ok = isinstance(value, bool)
        elif key == "args":
            ok = isinstance(value, list)
        elif key in ("kwargs", "options"):
            ok = isinstance(value, dict)
        else:
            continue
        if not ok:
            raise HTTPProblem(400, f"invalid schedule definition: {key} has the wrong type")


def definition_from(data: dict[str, Any]) -> ScheduleDefinition:
    """A validated definition from a JSON mapping; every problem is a 400 with one line."""
    _check_types(data)
    try:
        return validate(from_mapping(data))
    except (TypeError, ValueError, ArithmeticError, OverflowError) as exc:
        raise HTTPProblem(400, f"invalid schedule definition: {str(exc).splitlines()[0]}") from None


async def refuse_existing(name: str, instead: str) -> None:
    """A 409 when a schedule `name` exists: creating must not overwrite it (`instead` says
    what to do); any failure to read it counts as "does not exist"."""
    try:
        await call(api.aschedule(name))
    except Exception:
        return
    raise HTTPProblem(409, f"a schedule named {name!r} exists: {instead}")
