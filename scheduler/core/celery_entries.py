"""Celery beat entries as schedule definitions: what `scheduler import celery` and the beat's
sync of the app's `beat_schedule` both read. Pure: an entry in, a definition (or why not) out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from scheduler.core.definitions import ScheduleDefinition
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.options import OPTION_NAMES, PROTOCOL_HEADERS


@dataclass
class ImportPlan:
    definitions: list[ScheduleDefinition] = field(default_factory=list)
    unmapped: list[tuple[str, str]] = field(default_factory=list)
    """(entry name, why it could not be mapped): refused entries"""
    notes: list[tuple[str, str]] = field(default_factory=list)
    """(entry name, what of an imported entry was not carried over, and why)"""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(entry name, why): entries not needed here, such as Celery's own cleanup task"""


def _cron_from_crontab(schedule: Any) -> str:
    parts = [
        schedule._orig_minute,
        schedule._orig_hour,
        schedule._orig_day_of_month,
        schedule._orig_month_of_year,
        schedule._orig_day_of_week,
    ]
    return " ".join(str(p).replace(" ", "") for p in parts)


def mapped_options(raw: Any, dropped: list[str] | None = None) -> dict[str, Any]:
    """The options that map; what does not is appended to `dropped` in words."""
    options = dict(raw or {})
    kept = {k: v for k, v in options.items() if k in OPTION_NAMES}
    if isinstance(kept.get("headers"), dict):
        reserved = sorted(set(kept["headers"]) & PROTOCOL_HEADERS)
        kept["headers"] = {k: v for k, v in kept["headers"].items() if k not in reserved}
        if reserved and dropped is not None:
            dropped.append(f"headers {', '.join(reserved)} (reserved by Celery's protocol)")
        if not kept["headers"]:
            del kept["headers"]
    other = sorted(k for k in options if k not in OPTION_NAMES)
    if other and dropped is not None:
        dropped.append(
            f"option {', '.join(other)} (no equivalent here: runs go to the schedule's queue)"
            if set(other) & {"exchange", "routing_key"}
            else f"option {', '.join(other)} (no equivalent here)"
        )
    return kept


def note_dropped(plan: ImportPlan, name: str, dropped: list[str]) -> None:
    if dropped:
        plan.notes.append((name, "not carried: " + "; ".join(dropped)))


def definition_from_celery(
    name: str,
    task: str,
    schedule: Any,
    args: Any,
    kwargs: Any,
    options: Any,
    default_tz: str,
    dropped: list[str] | None = None,
) -> ScheduleDefinition:
    """One celery schedule object (crontab, timedelta, number, schedule) as a definition.

    A crontab keeps Celery's meaning: day of month AND day of week (`day_match="all"`)."""
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as every

    base: dict[str, Any] = {
        "name": name,
        "task": task,
        "args": list(args or []),
        "kwargs": dict(kwargs or {}),
        "options": mapped_options(options, dropped),
    }
    if isinstance(schedule, crontab):
        # a crontab is evaluated in its app's time zone
        return ScheduleDefinition(
            **base, cron=_cron_from_crontab(schedule), timezone=default_tz, day_match="all"
        )
    if isinstance(schedule, solar):
        raise InvalidScheduleError("solar schedules have no cron or interval equivalent")
    if isinstance(schedule, every):
        schedule = schedule.run_every
    if isinstance(schedule, timedelta):
        return ScheduleDefinition(**base, interval_seconds=Decimal(str(schedule.total_seconds())))
    if isinstance(schedule, int | float) and not isinstance(schedule, bool):
        return ScheduleDefinition(**base, interval_seconds=Decimal(str(schedule)))
    raise InvalidScheduleError(f"unsupported schedule type {type(schedule).__name__}")


def from_beat_schedule(app: Any) -> ImportPlan:
    """The entries of a Celery app's `beat_schedule` as definitions."""
    plan = ImportPlan()
    default_tz = str(app.conf.timezone or "UTC")
    for name, entry in (app.conf.beat_schedule or {}).items():
        dropped: list[str] = []
        try:
            plan.definitions.append(
                definition_from_celery(
                    name,
                    entry["task"],
                    entry["schedule"],
                    entry.get("args"),
                    entry.get("kwargs"),
                    entry.get("options"),
                    default_tz,
                    dropped,
                )
            )
        except (InvalidScheduleError, KeyError) as exc:
            plan.unmapped.append((name, str(exc)))
            continue
        other = sorted(set(entry) - {"task", "schedule", "args", "kwargs", "options"})
        if other:
            dropped.append(f"entry key {', '.join(other)} (no equivalent here)")
        note_dropped(plan, name, dropped)
    return plan
