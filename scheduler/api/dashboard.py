"""The reads only the web dashboard makes: the schedules page, one schedule's columns, the
overview, per-task stats, failure groups and the filters' choices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.api.units import unit, within
from scheduler.core.exceptions import InvalidScheduleError, ScheduleNotFound
from scheduler.store.aggregates import AggregateStore
from scheduler.store.pages import PageStore


async def aschedules_page(
    *,
    search: str | None = None,
    state: str | None = None,
    after: str | None = None,
    limit: int = 50,
    sparkline: int = 50,
    session: AsyncSession | None = None,
) -> dict[str, Any]:
    """One page of schedules by name (after `after`), each with its newest `sparkline` runs
    under `recent` (newest first) and `last_status`; `total` matching; `next` page key."""
    if not 1 <= limit <= 500:
        raise InvalidScheduleError("limit must be between 1 and 500")
    if state not in (None, "", "all", "enabled", "paused", "error"):
        raise InvalidScheduleError("state must be one of all, enabled, paused, error")
    async with unit(session) as s:
        rows, total = await PageStore.schedules_page(
            s, search=search or None, state=state or None, after=after, limit=limit
        )
        recent = await PageStore.recent_runs_of(s, [r["id"] for r in rows], per_schedule=sparkline)
    for row in rows:
        row["recent"] = recent.get(row["id"], [])
        row["last_status"] = row["recent"][0]["status"] if row["recent"] else None
    return {
        "schedules": rows,
        "total": total,
        "next": rows[-1]["name"] if len(rows) == limit else None,
    }


async def aschedule(name: str, *, session: AsyncSession | None = None) -> dict[str, Any]:
    """Every column of schedule `name`."""
    row = await within(session, PageStore.schedule_row, name)
    if row is None:
        raise ScheduleNotFound(name)
    return row


async def aoverview(
    *, now: datetime | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """The overview page: runs per hour by status (24 h), failing schedules, stuck or lost
    runs, workers and the beat seen in the last 15 minutes, the outbox depth."""
    now = now or datetime.now(UTC)
    day = now - timedelta(hours=24)
    async with unit(session) as s:
        hours = await AggregateStore.runs_per_hour(s, since=day)
        failing = await AggregateStore.failing_schedules(s, since=day, limit=20)
        stuck = await AggregateStore.stuck_runs(
            s, older_than=now - timedelta(minutes=10), lost_since=day, limit=20
        )
        activity = await AggregateStore.activity(s, since=now - timedelta(minutes=15))
        counts = await AggregateStore.schedule_counts(s)
    return {
        "now": now, "runs_per_hour": hours, "failing": failing, "stuck": stuck,
        "schedules": counts, **activity,
    }  # fmt: skip


async def atask_stats(
    *, since: datetime, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Per task since `since`: runs, successes, failures, p50/p95/max duration in ms."""
    return await within(session, AggregateStore.task_stats, since=since)


async def afailures(
    *, since: datetime, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Failed, timed-out and lost runs since `since`, grouped by task, error type and status."""
    return await within(session, AggregateStore.failure_groups, since=since)


async def afilter_choices(*, session: AsyncSession | None = None) -> dict[str, list[str]]:
    return await within(session, AggregateStore.distinct_values)
