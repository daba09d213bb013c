"""The partitions of `executions`: their bounds, their creation ahead and removal behind.

`executions` is `PARTITION BY RANGE (id)`; an id is a UUIDv7 whose first 48 bits are a time in
milliseconds (scheduler.core.execution_ids), so a partition holds the runs of one UTC day or one
week (Monday to Monday). Partitions live in the schema `scheduler_partitions`, next to
`executions_default`, which takes every id outside them: Celery's uuid4 task ids of direct
calls, the rows written before migration 0009, slots older than the oldest partition.

Any number of beats and the CLI may maintain at once: the work runs under a transaction-level
advisory lock (a beat that does not get it leaves the work to the holder), each DDL statement
waits at most `lock_timeout` for its lock (a busy table is tried again next time), and a
partition that already exists or overlaps another is skipped, never an error.

This is the one module with partition DDL.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.execution_ids import EPOCH, id_floor

log = logging.getLogger(__name__)

SCHEMA = "scheduler_partitions"
DEFAULT_PARTITION = "executions_default"
LOCK_KEY = 0x5C4ED_9A27
"""`pg_advisory_xact_lock` key of partition maintenance (one holder at a time)."""
LOCK_TIMEOUT = "2s"


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"

    @property
    def length(self) -> timedelta:
        return timedelta(days=1) if self is Interval.DAY else timedelta(days=7)


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None
    """Inclusive lower bound (None: the default partition)."""
    end: datetime | None
    rows_estimate: int
    total_bytes: int

    @property
    def is_default(self) -> bool:
        return self.start is None


@dataclass(frozen=True)
class MaintainReport:
    interval: Interval
    created: list[str]
    dropped: list[str]
    busy: bool = False
    """Another process held the maintenance lock: nothing was done here."""


# --- pure: periods and names ----------------------------------------------------------


def period_start(instant: datetime, interval: Interval) -> datetime:
    day = instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval is Interval.WEEK:
        day -= timedelta(days=day.weekday())
    return day


def partition_name(start: datetime, interval: Interval) -> str:
    return f"executions_{interval.value[0]}{start:%Y%m%d}"


def wanted_periods(
    now: datetime, interval: Interval, ahead: timedelta
) -> list[tuple[datetime, datetime]]:
    """The periods from the one holding `now` to the one holding `now + ahead`."""
    start = period_start(now, interval)
    periods = []
    while start <= now + ahead:
        periods.append((start, start + interval.length))
        start += interval.length
    return periods


def overlaps(start: datetime, end: datetime, partitions: Sequence[Partition]) -> bool:
    return any(
        p.start is not None and p.end is not None and p.start < end and start < p.end
        for p in partitions
    )


def choose_interval(setting: str, runs_per_day: float, daily_from: int) -> Interval:
    """`day` or `week` as set; `auto`: daily from `daily_from` runs a day, weekly below."""
    if setting != "auto":
        return Interval(setting)
    return Interval.DAY if runs_per_day >= daily_from else Interval.WEEK


_BOUND = re.compile(r"FROM \('([0-9a-f-]{36})'\) TO \('([0-9a-f-]{36})'\)")


def bound_time(bound: uuid.UUID) -> datetime:
    return EPOCH + timedelta(milliseconds=bound.int >> 80)


def parse_bounds(expression: str) -> tuple[datetime | None, datetime | None]:
    match = _BOUND.search(expression)
    if match is None:
        return None, None
    return bound_time(uuid.UUID(match[1])), bound_time(uuid.UUID(match[2]))


# --- SQL ------------------------------------------------------------------------------


async def list_partitions(session: AsyncSession) -> list[Partition]:
    """Every partition of `executions`, oldest first, the default partition last."""
    result = await session.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound,"
            " greatest(c.reltuples, 0)::bigint AS rows, pg_total_relation_size(c.oid) AS bytes"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'public.executions'::regclass"
        )
    )
    partitions = []
    for name, bound, rows, size in result.all():
        start, end = parse_bounds(str(bound))
        partitions.append(Partition(str(name), start, end, int(rows), int(size)))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(partitions, key=lambda p: p.start or far)


async def created_range(
    session: AsyncSession, names: Sequence[str]
) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Per partition, the oldest and newest `created_at` (two index endpoints each, one
    round trip for all): which partitions may hold runs past an age, which may be dropped."""
    if not names:
        return {}
    parts = [
        f"SELECT '{_identifier(n)}', min(created_at), max(created_at) FROM {SCHEMA}.{n}"
        for n in names
    ]
    result = await session.execute(text(" UNION ALL ".join(parts)))
    return {str(name): (low, high) for name, low, high in result.all()}


async def runs_per_day(session: AsyncSession) -> float:
    """Observed volume: the runs created in the last hour, times 24."""
    result = await session.execute(
        text("SELECT count(*) FROM executions WHERE created_at > now() - interval '1 hour'")
    )
    return float(result.scalar_one()) * 24


async def take_lock(session: AsyncSession, *, wait: bool) -> bool:
    if wait:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        return True
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    return bool(result.scalar_one())


def _is_expected_race(exc: DBAPIError) -> bool:
    """A partition someone else made (duplicate_table) or that overlaps one (42P17)."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(
        getattr(exc.orig, "__cause__", None), "sqlstate", None
    )
    return code in {"42P07", "42P17"}


async def create_partition(
    session: AsyncSession, start: datetime, end: datetime, interval: Interval
) -> str | None:
    """Create the partition for [start, end); None when it exists or overlaps one already.

    Rows of the default partition whose ids fall in the new range (a Celery uuid4 task id
    does, now and then) are moved into it first: PostgreSQL refuses the partition otherwise."""
    name = partition_name(start, interval)
    low, high = id_floor(start), id_floor(end)
    savepoint = await session.begin_nested()
    try:
        await mark_moving(session)
        await session.execute(
            text(
                "CREATE TEMP TABLE scheduler_moving ON COMMIT DROP AS"
                f" WITH gone AS (DELETE FROM {SCHEMA}.{DEFAULT_PARTITION}"
                "  WHERE id >= CAST(:low AS uuid) AND id < CAST(:high AS uuid) RETURNING *)"
                " SELECT * FROM gone"
            ),
            {"low": str(low), "high": str(high)},
        )
        await session.execute(
            text(
                f"CREATE TABLE {SCHEMA}.{name} PARTITION OF executions"
                f" FOR VALUES FROM ('{low}') TO ('{high}')"
            )
        )
        await session.execute(text("INSERT INTO executions SELECT * FROM scheduler_moving"))
        await session.execute(text("DROP TABLE scheduler_moving"))
    except DBAPIError as exc:
        await savepoint.rollback()
        if _is_expected_race(exc):
            return None
        raise
    await savepoint.commit()
    return name


async def mark_moving(session: AsyncSession) -> None:
    """Rows this transaction writes are moved, not new: the alert triggers stay quiet."""
    await session.execute(text("SET LOCAL scheduler.moving = 'on'"))


async def drop_partition(session: AsyncSession, name: str) -> None:
    await session.execute(text(f"DROP TABLE {SCHEMA}.{_identifier(name)}"))


async def has_active_runs(session: AsyncSession, name: str) -> bool:
    """Whether a partition holds a run not yet finished (`ix_executions_active`: tiny)."""
    result = await session.execute(
        text(
            f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.{_identifier(name)}"
            " WHERE status_id IN (1, 2, 3, 4))"
        )
    )
    return bool(result.scalar_one())


async def lock_for_drop(session: AsyncSession, name: str) -> None:
    await session.execute(text(f"LOCK TABLE {SCHEMA}.{_identifier(name)} IN SHARE MODE"))


def _identifier(name: str) -> str:
    if not re.fullmatch(r"executions_[a-z0-9_]+", name):
        raise ValueError(f"not a partition name: {name!r}")
    return name


async def set_lock_timeout(session: AsyncSession) -> None:
    await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


async def explain(session: AsyncSession, statement: str, params: dict[str, Any]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of a read, for the benchmark's report."""
    result = await session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + statement), params)
    return [str(r[0]) for r in result.all()]
