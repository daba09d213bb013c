"""The dashboard's lists: schedules paged by name, runs paged by key, one run, revoking.

Paging is by key, never by offset, so page 1,000 costs what page 1 costs.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    and_,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    Schedule,
)

EXACT_COUNT_LIMIT = 10_000
"""Above this many matching runs the runs page shows the planner's estimate instead."""


@dataclass(frozen=True)
class RunFilter:
    """The runs page's filters; None means "any"."""

    schedule_id: int | None = None
    task: str | None = None
    status_id: int | None = None
    trigger: str | None = None
    worker: str | None = None
    since: datetime | None = None
    until: datetime | None = None


RUN_COLUMNS = (
    Execution.id,
    Schedule.name.label("schedule"),
    Execution.task,
    Execution.trigger,
    Execution.status_id,
    Execution.scheduled_for,
    Execution.created_at,
    Execution.started_at,
    Execution.completed_at,
    Execution.duration_ms,
    Execution.attempt,
    Execution.worker,
    Execution.error_type,
    Execution.error_message,
    Execution.progress,
)


class PageStore:
    """The paged lists. Stateless: every method is static and takes the caller's session;
    none commits."""

    @staticmethod
    async def schedules_page(
        session: AsyncSession,
        *,
        search: str | None,
        state: str | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of schedules by name after `after`, and how many match in all.

        `state`: `enabled`, `paused` (disabled) or `error` (has `last_error`)."""
        conditions: list[Any] = []
        if search:
            pattern = (
                "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            conditions.append(or_(Schedule.name.ilike(pattern), Schedule.task.ilike(pattern)))
        if state == "enabled":
            conditions.append(Schedule.enabled.is_(True))
        elif state == "paused":
            conditions.append(Schedule.enabled.is_(False))
        elif state == "error":
            conditions.append(Schedule.last_error.is_not(None))
        where = and_(True, *conditions)
        total = await session.execute(select(func.count()).select_from(Schedule).where(where))
        count = int(total.scalar_one())
        stmt = select(Schedule.__table__).where(where).order_by(Schedule.name).limit(limit)
        if after is not None:
            stmt = stmt.where(Schedule.name > after)
        rows = [dict(r) for r in (await session.execute(stmt)).mappings()]
        return rows, count

    @staticmethod
    async def recent_runs_of(
        session: AsyncSession, schedule_ids: Sequence[int], *, per_schedule: int
    ) -> dict[int, list[dict[str, Any]]]:
        """The newest `per_schedule` runs of each schedule, newest first (one lateral join,
        served by the (schedule_id, created_at) index)."""
        if not schedule_ids:
            return {}
        ids = select(
            func.unnest(cast(list(schedule_ids), ARRAY(BigInteger))).label("sid")
        ).subquery()
        runs = (
            select(
                Execution.status_id,
                Execution.duration_ms,
                Execution.created_at,
                Execution.error_message,
            )
            .where(Execution.schedule_id == ids.c.sid)
            .order_by(Execution.created_at.desc())
            .limit(per_schedule)
            .lateral()
        )
        result = await session.execute(select(ids.c.sid, runs).select_from(ids.join(runs, true())))
        grouped: dict[int, list[dict[str, Any]]] = {int(i): [] for i in schedule_ids}
        for row in result.mappings():
            item = dict(row)
            sid = int(item.pop("sid"))
            item["status"] = ExecutionStatus.from_id(item.pop("status_id")).value
            grouped[sid].append(item)
        return grouped

    @staticmethod
    async def schedule_row(session: AsyncSession, name: str) -> dict[str, Any] | None:
        result = await session.execute(select(Schedule.__table__).where(Schedule.name == name))
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def schedule_id(session: AsyncSession, name: str) -> int | None:
        result = await session.execute(select(Schedule.id).where(Schedule.name == name))
        found = result.scalar()
        return None if found is None else int(found)

    @staticmethod
    async def schedule_names(session: AsyncSession, schedule_ids: Sequence[int]) -> dict[int, str]:
        if not schedule_ids:
            return {}
        result = await session.execute(
            select(Schedule.id, Schedule.name).where(Schedule.id.in_(list(schedule_ids)))
        )
        return {int(i): str(n) for i, n in result.all()}

    @staticmethod
    def _filtered(stmt: Select[Any], where: RunFilter) -> Select[Any]:
        if where.schedule_id is not None:
            stmt = stmt.where(Execution.schedule_id == where.schedule_id)
        if where.task is not None:
            stmt = stmt.where(Execution.task == where.task)
        if where.status_id is not None:
            stmt = stmt.where(Execution.status_id == where.status_id)
        if where.trigger is not None:
            stmt = stmt.where(Execution.trigger == where.trigger)
        if where.worker is not None:
            stmt = stmt.where(Execution.worker == where.worker)
        if where.since is not None:
            stmt = stmt.where(Execution.created_at >= where.since)
        if where.until is not None:
            stmt = stmt.where(Execution.created_at < where.until)
        return stmt

    @staticmethod
    async def runs_page(
        session: AsyncSession,
        where: RunFilter,
        *,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Runs newest first, strictly older than the `before` key (created_at, id)."""
        stmt = PageStore._filtered(
            select(*RUN_COLUMNS).outerjoin(Schedule, Schedule.id == Execution.schedule_id),
            where,
        )
        if before is not None:
            stmt = stmt.where(tuple_(Execution.created_at, Execution.id) < tuple_(*before))
        stmt = stmt.order_by(Execution.created_at.desc(), Execution.id.desc()).limit(limit)
        rows = [dict(r) for r in (await session.execute(stmt)).mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def count_runs(session: AsyncSession, where: RunFilter) -> tuple[int, bool]:
        """(count, estimated): exact up to EXACT_COUNT_LIMIT, else the planner's estimate.

        No index serves `trigger` or `worker`: with either, the runs passing the other
        filters (through their index, newest first) are read at most EXACT_COUNT_LIMIT + 1
        and the matches counted among them; exact when that read ends the candidates, else
        estimated. (Counting a rare combination exactly read every candidate: 100k runs of
        one status at 1M runs, 300+ ms.)"""
        if where.trigger is None and where.worker is None:
            capped = PageStore._filtered(
                select(literal_column("1")).select_from(Execution), where
            ).limit(EXACT_COUNT_LIMIT + 1)
            result = await session.execute(select(func.count()).select_from(capped.subquery()))
            exact = int(result.scalar_one())
            if exact <= EXACT_COUNT_LIMIT:
                return exact, False
        else:
            unserved = and_(
                true() if where.trigger is None else Execution.trigger == where.trigger,
                true() if where.worker is None else Execution.worker == where.worker,
            )
            served = dataclasses.replace(where, trigger=None, worker=None)
            window = (
                PageStore._filtered(select(unserved.label("match")).select_from(Execution), served)
                .order_by(Execution.created_at.desc())
                .limit(EXACT_COUNT_LIMIT + 1)
                .subquery()
            )
            counted = await session.execute(
                select(func.count(), func.count().filter(window.c.match)).select_from(window)
            )
            read, exact = (int(n) for n in counted.one())
            if read <= EXACT_COUNT_LIMIT:
                return exact, False
        plain = PageStore._filtered(select(Execution.id), where)
        compiled = plain.compile(session.bind, compile_kwargs={"literal_binds": True})
        plan = await session.execute(text(f"EXPLAIN (FORMAT JSON) {compiled}"))
        document = plan.scalar_one()
        data = json.loads(document) if isinstance(document, str) else document
        return max(int(data[0]["Plan"]["Plan Rows"]), exact), True

    @staticmethod
    async def run_row(session: AsyncSession, execution_id: uuid.UUID) -> dict[str, Any] | None:
        result = await session.execute(
            select(Execution.__table__, Schedule.name.label("schedule"))
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(Execution.id == execution_id)
        )
        row = result.mappings().first()
        if row is None:
            return None
        found = dict(row)
        found["status"] = ExecutionStatus.from_id(found.pop("status_id")).value
        return found

    @staticmethod
    async def mark_revoked(session: AsyncSession, execution_ids: Sequence[uuid.UUID]) -> list[str]:
        """Mark the still-active runs among `execution_ids` revoked; returns their ids."""
        result = await session.execute(
            update(Execution)
            .where(
                Execution.id.in_(list(execution_ids)),
                Execution.status_id.in_(NON_TERMINAL_STATUS_IDS),
            )
            .values(
                status_id=ExecutionStatus.REVOKED.id,
                completed_at=func.now(),
                error_type="Revoked",
                error_message="revoked from the dashboard",
            )
            .returning(Execution.id)
            .execution_options(synchronize_session=False)
        )
        return [str(r) for r in result.scalars()]
