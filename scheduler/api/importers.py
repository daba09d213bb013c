"""Bring schedules over from other beats: a Celery app's `beat_schedule`, RedBeat's Redis
entries, django-celery-beat's tables (read with plain SQL, no Django).

Each importer returns candidates (definitions) and the entries it could not map, with why.
Nothing is written here: `scheduler import ...` validates and inserts them in one transaction.
"""

from __future__ import annotations

import importlib
import json
from datetime import UTC
from decimal import Decimal
from typing import Any

from scheduler.core.celery_entries import (
    ImportPlan,
    definition_from_celery,
    from_beat_schedule,
    mapped_options,
    note_dropped,
)
from scheduler.core.definitions import ScheduleDefinition
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.runtime.urls import redact


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
            note_dropped(plan, definition.name, dropped)
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
        options = mapped_options({**options, **routing}, dropped)
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
        note_dropped(plan, name, dropped)
    return plan
