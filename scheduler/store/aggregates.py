"""The dashboard's aggregates: runs per hour, failing and stuck, activity, per task, failures
grouped, counts, filter values.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from scheduler.core.domain import ExecutionStatus
from scheduler.store.common import FAILURE_STATUS_IDS
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    Schedule,
)
from scheduler.store.pages import RUN_COLUMNS


class AggregateStore:
    """The aggregates. Stateless: every method is static and takes the caller's session;
    none commits."""

    @staticmethod
    async def runs_per_hour(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
        hour = func.date_trunc("hour", Execution.created_at).label("hour")
        result = await session.execute(
            select(hour, Execution.status_id, func.count().label("runs"))
            .where(Execution.created_at >= since)
            .group_by(hour, Execution.status_id)
            .order_by(hour)
        )
        rows = [dict(r) for r in result.mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def failing_schedules(
        session: AsyncSession, *, since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Schedules whose newest finished run since `since` failed, timed out or was lost,
        newest failure first. Starts from the failures (a fraction of the runs), newest per
        schedule, and drops those with a later good run (an index probe each, stopping at
        `limit`)."""
        failures = (
            select(
                Execution.schedule_id,
                Execution.status_id,
                Execution.created_at,
                Execution.error_message,
            )
            .where(
                Execution.created_at >= since,
                Execution.schedule_id.is_not(None),
                Execution.status_id.in_(FAILURE_STATUS_IDS),
            )
            .ext(distinct_on(Execution.schedule_id))
            .order_by(Execution.schedule_id, Execution.created_at.desc())
            .subquery()
        )
        newest_first = (
            select(failures).order_by(failures.c.created_at.desc()).limit(100_000).subquery()
        )
        later = aliased(Execution)
        recovered = (
            select(literal_column("1"))
            .where(
                later.schedule_id == newest_first.c.schedule_id,
                later.created_at > newest_first.c.created_at,
                later.status_id.notin_((*NON_TERMINAL_STATUS_IDS, *FAILURE_STATUS_IDS)),
            )
            .exists()
        )
        result = await session.execute(
            select(
                Schedule.name,
                Schedule.task,
                newest_first.c.status_id,
                newest_first.c.created_at,
                newest_first.c.error_message,
            )
            .select_from(newest_first)
            .join(Schedule, Schedule.id == newest_first.c.schedule_id)
            .where(~recovered)
            .order_by(newest_first.c.created_at.desc())
            .limit(limit)
        )
        rows = [dict(r) for r in result.mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def stuck_runs(
        session: AsyncSession, *, older_than: datetime, lost_since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Active runs created before `older_than`, and runs lost since `lost_since`."""
        stmt = (
            select(*RUN_COLUMNS)
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(
                or_(
                    and_(
                        Execution.status_id.in_(NON_TERMINAL_STATUS_IDS),
                        Execution.created_at < older_than,
                    ),
                    and_(
                        Execution.status_id == ExecutionStatus.LOST.id,
                        Execution.created_at >= lost_since,
                    ),
                )
            )
            .order_by(Execution.created_at.desc())
            .limit(limit)
        )
        rows = [dict(r) for r in (await session.execute(stmt)).mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def activity(session: AsyncSession, *, since: datetime) -> dict[str, Any]:
        """Workers that started runs since `since` (with their last start), the last beat
        dispatch, and the outbox depth (runs written but not yet on the broker)."""
        workers = await session.execute(
            select(Execution.worker, func.max(Execution.started_at).label("last_seen"))
            .where(
                # created_at bounds the scan to the index; a run queued over an hour is rare
                Execution.created_at >= since - timedelta(hours=1),
                Execution.started_at >= since,
                Execution.worker.is_not(None),
            )
            .group_by(Execution.worker)
            .order_by(Execution.worker)
        )
        beat = await session.execute(
            select(func.max(Execution.created_at)).where(
                Execution.created_at >= since,
                Execution.trigger.in_(("schedule", "catchup")),
            )
        )
        outbox = await session.execute(
            select(func.count()).where(Execution.status_id == ExecutionStatus.PENDING.id)
        )
        return {
            "workers": [dict(r) for r in workers.mappings()],
            "last_beat_dispatch": beat.scalar(),
            "outbox_pending": int(outbox.scalar_one()),
        }

    @staticmethod
    async def task_stats(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
        done = Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS)
        result = await session.execute(
            select(
                Execution.task,
                func.count().label("runs"),
                func.count()
                .filter(Execution.status_id == ExecutionStatus.SUCCESS.id)
                .label("success"),
                func.count().filter(Execution.status_id.in_(FAILURE_STATUS_IDS)).label("failed"),
                func.count().filter(done).label("finished"),
                func.percentile_cont(0.5).within_group(Execution.duration_ms).label("p50_ms"),
                func.percentile_cont(0.95).within_group(Execution.duration_ms).label("p95_ms"),
                func.max(Execution.duration_ms).label("max_ms"),
            )
            .where(Execution.created_at >= since)
            .group_by(Execution.task)
            .order_by(Execution.task)
        )
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def failure_groups(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
        result = await session.execute(
            select(
                Execution.task,
                func.coalesce(Execution.error_type, "").label("error_type"),
                Execution.status_id,
                func.count().label("runs"),
                func.max(Execution.created_at).label("last_at"),
                func.max(Execution.error_message).label("sample_message"),
            )
            .where(
                Execution.created_at >= since,
                Execution.status_id.in_(FAILURE_STATUS_IDS),
            )
            .group_by(Execution.task, text("2"), Execution.status_id)
            .order_by(func.count().desc(), Execution.task)
            .limit(200)
        )
        rows = [dict(r) for r in result.mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def schedule_counts(session: AsyncSession) -> dict[str, int]:
        result = await session.execute(
            select(
                func.count().label("total"),
                func.count().filter(Schedule.enabled.is_(True)).label("enabled"),
                func.count().filter(Schedule.last_error.is_not(None)).label("error"),
            )
        )
        return {k: int(v) for k, v in result.mappings().one().items()}

    @staticmethod
    async def distinct_values(session: AsyncSession) -> dict[str, list[str]]:
        """Choices for the runs page's filters: registered-looking task names and workers
        seen in the newest runs (bounded: never a scan of the whole table)."""
        recent = (
            select(Execution.task, Execution.worker)
            .order_by(Execution.created_at.desc())
            .limit(5000)
            .subquery()
        )
        tasks = await session.execute(select(recent.c.task).distinct().order_by(recent.c.task))
        workers = await session.execute(
            select(recent.c.worker)
            .where(recent.c.worker.is_not(None))
            .distinct()
            .order_by(recent.c.worker)
        )
        return {
            "tasks": [str(t) for t in tasks.scalars()],
            "workers": [str(w) for w in workers.scalars()],
        }
