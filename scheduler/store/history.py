"""Execution history: lists, details, stats, run trees, pruning."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import ScheduleNotFound
from scheduler.store.common import as_uuid, with_status
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    Schedule,
)

_GROUP_KEYS = frozenset({"schedule_id", "task"})
"""The grouping columns of `stats`, replaced by the schedule's name in its result."""

_HISTORY_COLUMNS = (
    Execution.id,
    Schedule.name.label("schedule"),
    Execution.task,
    Execution.trigger,
    Execution.status_id,
    Execution.scheduled_for,
    Execution.created_at,
    Execution.queued_at,
    Execution.started_at,
    Execution.completed_at,
    Execution.duration_ms,
    Execution.attempt,
    Execution.worker,
    Execution.error_type,
    Execution.error_message,
    Execution.parent_id,
    Execution.root_id,
)


class HistoryStore:
    """History reads and pruning. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

    @staticmethod
    async def run_tree(
        session: AsyncSession, execution_id: uuid.UUID | str
    ) -> list[dict[str, Any]]:
        """Every run of the tree `execution_id` belongs to (its root and every run whose
        root_id is that root), oldest first; empty when the execution does not exist."""
        key = as_uuid(execution_id)
        root = (
            await session.execute(
                select(func.coalesce(Execution.root_id, Execution.id)).where(Execution.id == key)
            )
        ).scalar()
        if root is None:
            return []
        result = await session.execute(
            select(*_HISTORY_COLUMNS)
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(or_(Execution.id == root, Execution.root_id == root))
            .order_by(Execution.created_at, Execution.started_at)
            .limit(10_000)
        )
        return [with_status(dict(r)) for r in result.mappings()]

    @staticmethod
    async def history(
        session: AsyncSession,
        *,
        schedule: str | None = None,
        task: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        root: uuid.UUID | str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first. Filtering by schedule resolves its id first so the
        (schedule_id, created_at) index serves the query; `root` keeps the runs of one tree
        (the root itself and every run whose root_id it is)."""
        stmt = select(*_HISTORY_COLUMNS).outerjoin(Schedule, Schedule.id == Execution.schedule_id)
        if schedule is not None:
            schedule_id = (
                await session.execute(select(Schedule.id).where(Schedule.name == schedule))
            ).scalar()
            if schedule_id is None:
                raise ScheduleNotFound(schedule)
            stmt = stmt.where(Execution.schedule_id == schedule_id)
        if root is not None:
            key = as_uuid(root)
            stmt = stmt.where(or_(Execution.id == key, Execution.root_id == key))
        if task is not None:
            stmt = stmt.where(Execution.task == task)
        if status is not None:
            stmt = stmt.where(Execution.status_id == ExecutionStatus(status).id)
        if since is not None:
            stmt = stmt.where(Execution.created_at >= since)
        if until is not None:
            stmt = stmt.where(Execution.created_at < until)
        result = await session.execute(stmt.order_by(Execution.created_at.desc()).limit(limit))
        return [with_status(dict(r)) for r in result.mappings()]

    @staticmethod
    async def execution_details(
        session: AsyncSession, execution_id: uuid.UUID | str
    ) -> dict[str, Any] | None:
        result = await session.execute(
            select(
                *_HISTORY_COLUMNS,
                Execution.args,
                Execution.kwargs,
                Execution.traceback,
                Execution.result_summary,
                Execution.progress,
            )
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(Execution.id == as_uuid(execution_id))
        )
        row = result.mappings().first()
        return None if row is None else with_status(dict(row))

    @staticmethod
    async def stats(
        session: AsyncSession, *, since: datetime, schedule: str | None = None
    ) -> list[dict[str, Any]]:
        """Per schedule (or task, for runs without one): counts, success rate, durations.

        The runs are grouped by `schedule_id` (and task, for runs without a schedule) before
        the names are joined: sorting the window's rows on a bigint rather than on the name
        text is what keeps 24 h of 10,000 schedules (333k runs) near 0.1 s."""
        done = Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS)

        def count_of(code: ExecutionStatus) -> Any:
            return func.count().filter(Execution.status_id == code.id)

        unscheduled_task = case((Execution.schedule_id.is_(None), Execution.task))
        grouped = (
            select(
                Execution.schedule_id,
                unscheduled_task.label("task"),
                func.count().label("runs"),
                count_of(ExecutionStatus.SUCCESS).label("success"),
                count_of(ExecutionStatus.FAILED).label("failed"),
                count_of(ExecutionStatus.TIMEOUT).label("timeout"),
                count_of(ExecutionStatus.MISSED).label("missed"),
                count_of(ExecutionStatus.SKIPPED).label("skipped"),
                count_of(ExecutionStatus.LOST).label("lost"),
                func.count().filter(~done).label("active"),
                func.percentile_cont(0.5).within_group(Execution.duration_ms).label("p50_ms"),
                func.percentile_cont(0.95).within_group(Execution.duration_ms).label("p95_ms"),
                func.max(Execution.duration_ms).label("max_ms"),
                func.max(Execution.completed_at)
                .filter(Execution.status_id == ExecutionStatus.FAILED.id)
                .label("last_failure_at"),
            )
            .where(Execution.created_at >= since)
            .group_by(Execution.schedule_id, unscheduled_task)
        )
        if schedule is not None:
            grouped = grouped.where(
                Execution.schedule_id
                == select(Schedule.id).where(Schedule.name == schedule).scalar_subquery()
            )
        g = grouped.subquery()
        key = func.coalesce(Schedule.name, "(task) " + g.c.task)
        stmt = (
            select(key.label("schedule"), *(c for c in g.c if c.name not in _GROUP_KEYS))
            .outerjoin(Schedule, Schedule.id == g.c.schedule_id)
            .order_by(key)
        )
        result = await session.execute(stmt)
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def prune_batch(
        session: AsyncSession, *, older_than: datetime, keep_last: int, batch: int
    ) -> int:
        """Delete up to `batch` terminal runs created before `older_than`, keeping each
        schedule's newest `keep_last` runs. Returns how many were deleted."""
        ranked = (
            select(
                Execution.id,
                func.row_number()
                .over(partition_by=Execution.schedule_id, order_by=Execution.created_at.desc())
                .label("rank"),
            )
            .where(Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS))
            .subquery()
        )
        victims = (
            select(Execution.id)
            .join(ranked, ranked.c.id == Execution.id)
            .where(
                Execution.created_at < older_than,
                Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS),
                ranked.c.rank > keep_last,
            )
            .limit(batch)
        )
        if keep_last <= 0:
            victims = (
                select(Execution.id)
                .where(
                    Execution.created_at < older_than,
                    Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS),
                )
                .limit(batch)
            )
        result = await session.execute(
            delete(Execution)
            .where(Execution.id.in_(victims.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def count_prunable(session: AsyncSession, *, older_than: datetime) -> int:
        result = await session.execute(
            select(func.count()).where(
                Execution.created_at < older_than,
                Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS),
            )
        )
        return int(result.scalar_one())
