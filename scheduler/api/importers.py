"""Bring schedules over from other beats: a Celery app's `beat_schedule`, RedBeat's Redis
entries, django-celery-beat's tables (read with plain SQL, no Django).

Each importer returns candidates (definitions) and the entries it could not map, with why.
Nothing is written here: `scheduler import ...` validates and inserts them in one transaction.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

from scheduler.core.definitions import ScheduleDefinition
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.options import OPTION_NAMES, PROTOCOL_HEADERS
from scheduler.runtime.urls import redact


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


def _options(raw: Any, dropped: list[str] | None = None) -> dict[str, Any]:
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


def _note(plan: ImportPlan, name: str, dropped: list[str]) -> None:
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
        "options": _options(options, dropped),
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


def from_celery_app(target: str) -> ImportPlan:
    """`module:attribute` of a Celery app; its `beat_schedule` entries."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidScheduleError(f"cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attribute or "app", None)
    if app is None or not hasattr(app, "conf"):
        raise InvalidScheduleError(f"{target!r} is not a Celery app (use MODULE:APP)")
    return from_beat_schedule(app)


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
        _note(plan, name, dropped)
    return plan


def from_redbeat(redis_url: str, key_prefix: str = "redbeat:") -> ImportPlan:
    """RedBeat entries, read with RedBeat's own classes."""
    from celery import Celery
    from redbeat.schedulers import RedBeatSchedulerEntry

    app = Celery("redbeat-import", broker=redis_url)
    app.conf.redbeat_redis_url = redis_url
    app.conf.redbeat_key_prefix = key_prefix
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        raw_keys: list[Any] = list(client.zrange(f"{key_prefix}:schedule", 0, -1))
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in raw_keys]
    finally:
        client.close()
    plan = ImportPlan()
    for key in keys:
        dropped: list[str] = []
        try:
            entry = RedBeatSchedulerEntry.from_key(key, app=app)
            definition = definition_from_celery(
                entry.name,
                entry.task,
                entry.schedule,
                entry.args,
                entry.kwargs,
                entry.options,
                "UTC",
                dropped,
            )
            if not entry.enabled:
                definition = ScheduleDefinition(**{**definition.__dict__, "enabled": False})
            plan.definitions.append(definition)
            _note(plan, definition.name, dropped)
        except Exception as exc:  # one broken entry must not stop the others
            plan.unmapped.append((key.removeprefix(key_prefix), str(exc) or type(exc).__name__))
    return plan


_PERIOD_S = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


async def from_django_celery_beat(database_url: str) -> ImportPlan:
    """django-celery-beat's periodic tasks, read from its tables with SQL."""
    import asyncpg

    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    if not dsn.strip():
        raise InvalidScheduleError(
            "--database-url is empty: give the Django project's PostgreSQL URL"
        )
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except Exception as exc:  # asyncpg raises assorted errors for bad URLs and refusals
        reason = redact(str(exc)) or type(exc).__name__
        raise InvalidScheduleError(
            f"cannot reach the database of --database-url ({reason}): check that URL"
        ) from None
    try:
        rows = await conn.fetch(
            "SELECT t.name, t.task, t.args, t.kwargs, t.queue, t.priority, t.expires, "
            "t.one_off, t.start_time, t.enabled, t.description, t.headers, t.expire_seconds, "
            "t.exchange, t.routing_key, "
            "c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, "
            "c.timezone AS cron_tz, i.every, i.period, k.clocked_time, t.solar_id "
            "FROM django_celery_beat_periodictask t "
            "LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id "
            "LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id "
            "LEFT JOIN django_celery_beat_clockedschedule k ON k.id = t.clocked_id "
            "ORDER BY t.name"
        )
    except asyncpg.UndefinedTableError:
        raise InvalidScheduleError(
            "no django_celery_beat tables in the database of --database-url: "
            "is it the Django project's database, migrated?"
        ) from None
    except asyncpg.UndefinedColumnError as exc:
        raise InvalidScheduleError(
            f"the django_celery_beat tables at --database-url are older than 2.x ({exc}): "
            "run `python manage.py migrate django_celery_beat` first"
        ) from None
    except asyncpg.PostgresError as exc:
        raise InvalidScheduleError(f"cannot read --database-url: {exc}") from None
    finally:
        await conn.close()
    plan = ImportPlan()
    for row in rows:
        name = row["name"]
        if name == "celery.backend_cleanup":
            plan.skipped.append((name, "celery's own cleanup task is not needed here"))
            continue
        try:
            args = json.loads(row["args"] or "[]")
            kwargs = json.loads(row["kwargs"] or "{}")
        except ValueError:
            plan.unmapped.append((name, "args/kwargs are not valid JSON"))
            continue
        options: dict[str, Any] = {}
        if row["queue"]:
            options["queue"] = row["queue"]
        if row["priority"] is not None:
            options["priority"] = row["priority"]
        if row["expire_seconds"] is not None:
            options["expires"] = row["expire_seconds"]
        dropped: list[str] = []
        try:
            headers = json.loads(row["headers"] or "{}")
        except ValueError:
            headers = None
            dropped.append("headers (not valid JSON)")
        if isinstance(headers, dict) and headers:
            options["headers"] = headers
        routing = {k: row[k] for k in ("exchange", "routing_key") if row[k]}
        options = _options({**options, **routing}, dropped)
        base: dict[str, Any] = {
            "name": name,
            "task": row["task"],
            "args": args,
            "kwargs": kwargs,
            "options": options,
            "enabled": bool(row["enabled"]),
            "description": row["description"] or None,
            "start_at": row["start_time"],
            "end_at": row["expires"],
            "max_runs": 1 if row["one_off"] else None,
        }
        if row["minute"] is not None:
            cron = " ".join(
                str(row[k]).replace(" ", "")
                for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
            )
            plan.definitions.append(
                ScheduleDefinition(
                    **base, cron=cron, timezone=str(row["cron_tz"] or "UTC"), day_match="all"
                )
            )
        elif row["every"] is not None:
            seconds = Decimal(str(row["every"])) * Decimal(str(_PERIOD_S[row["period"]]))
            plan.definitions.append(ScheduleDefinition(**base, interval_seconds=seconds))
        elif row["clocked_time"] is not None:
            base["max_runs"] = None
            plan.definitions.append(
                ScheduleDefinition(**base, run_at=row["clocked_time"].astimezone(UTC))
            )
        elif row["solar_id"] is not None:
            plan.unmapped.append((name, "solar schedules have no cron or interval equivalent"))
            continue
        else:
            plan.unmapped.append((name, "no schedule attached"))
            continue
        _note(plan, name, dropped)
    return plan
