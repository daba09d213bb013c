"""Runs not yet confirmed on the broker: marked queued, swept, republished, given up as lost."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from scheduler.core.domain import ExecutionStatus, OverlapPolicy
from scheduler.store.common import MESSAGE_COLUMNS, transaction_driver
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    Schedule,
)

_MARK_QUEUED_SQL = (
    f"UPDATE executions SET queued_at = $1, status_id = CASE WHEN status_id ="
    f" {ExecutionStatus.PENDING.id} THEN {ExecutionStatus.QUEUED.id} ELSE status_id END"
    " WHERE id = ANY($2::uuid[]) AND queued_at IS NULL"
)


class OutboxStore:
    """Unconfirmed runs. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

    @staticmethod
    async def mark_queued(
        session: AsyncSession, execution_ids: Sequence[uuid.UUID], *, now: datetime
    ) -> int:
        if not execution_ids:
            return 0
        # A worker may have claimed the run already (it was on the broker): the status is
        # then left alone, but `queued_at` still records when the publish was confirmed.
        # The commit need not wait for the disk: should the database crash before the mark is
        # flushed, the run is `pending` again and the sweep publishes it again with the same
        # task id, which a worker's claim runs at most once.
        await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        driver = await transaction_driver(session)
        status = await driver.execute(_MARK_QUEUED_SQL, now, list(execution_ids))
        return int(status.split()[-1])

    @staticmethod
    async def lock_stale_pending(
        session: AsyncSession, *, older_than: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Rows still `pending` (publish failed, or a beat died after commit), locked; not a
        `buffer_one` run held back behind an earlier run of its schedule that is not over.
        `withdraw` marks a run written ahead whose schedule has since been removed, or disabled
        by hand before the run's slot: it is not to be published."""
        written_ahead = Execution.created_at < Execution.scheduled_for
        disabled = or_(
            Schedule.id.is_(None),
            and_(
                ~Schedule.enabled,
                Schedule.next_run_at.is_not(None),
                Execution.scheduled_for > Schedule.updated_at,
            ),
        )
        other = aliased(Execution)
        held = and_(
            Schedule.overlap_policy == OverlapPolicy.BUFFER_ONE.value,
            select(other.id)
            .where(
                other.schedule_id == Execution.schedule_id,
                other.status_id.in_(NON_TERMINAL_STATUS_IDS),
                other.created_at < Execution.created_at,
            )
            .exists(),
        )
        result = await session.execute(
            select(*MESSAGE_COLUMNS, and_(written_ahead, disabled).label("withdraw"))
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(
                # a buffered run waits for the run before it (its outcome releases it)
                or_(Schedule.id.is_(None), ~held),
                Execution.status_id == ExecutionStatus.PENDING.id,
                Execution.created_at < older_than,
                # a run written ahead is its beat's to publish until a while after its time
                or_(Execution.scheduled_for.is_(None), Execution.scheduled_for < older_than),
            )
            .order_by(Execution.created_at)
            .limit(limit)
            .with_for_update(of=Execution, skip_locked=True)
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def queued_since(
        session: AsyncSession, *, since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Runs marked `queued` at or after `since` that no worker has started: their messages
        may have been lost with a broker that went down."""
        result = await session.execute(
            select(*MESSAGE_COLUMNS)
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(
                Execution.status_id == ExecutionStatus.QUEUED.id,
                Execution.queued_at >= since,
            )
            .order_by(Execution.queued_at)
            .limit(limit)
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def lock_stale_queued(
        session: AsyncSession,
        *,
        now: datetime,
        timeout_s: float,
        lost_after_s: float,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Runs `queued` longer than their bound (a schedule's `options.queued_timeout_s`, else
        `timeout_s`) that no worker has claimed, locked (SKIP LOCKED: one beat handles each),
        with the bounds that apply to each and the instants they are judged by."""

        def bound(name: str, default: float) -> Any:
            # a raw row's non-number or non-positive value is ignored here
            value = Schedule.options[name]
            number = case((func.jsonb_typeof(value) == "number", value.as_float()), else_=None)
            return func.coalesce(case((number > 0, number), else_=None), default)

        timeout = bound("queued_timeout_s", timeout_s)
        lost_after = bound("queued_lost_after_s", lost_after_s)
        result = await session.execute(
            select(
                *MESSAGE_COLUMNS,
                Execution.queued_at,
                Execution.created_at,
                timeout.label("timeout_s"),
                lost_after.label("lost_after_s"),
            )
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(
                Execution.status_id == ExecutionStatus.QUEUED.id,
                Execution.queued_at < now - func.make_interval(0, 0, 0, 0, 0, 0, timeout),
            )
            .order_by(Execution.queued_at)
            .limit(limit)
            .with_for_update(of=Execution, skip_locked=True)
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def requeued(
        session: AsyncSession, execution_ids: Sequence[uuid.UUID], *, now: datetime
    ) -> int:
        """Runs published again: `queued_at` says when (a run a worker claimed meanwhile is
        left alone)."""
        if not execution_ids:
            return 0
        result = await session.execute(
            update(Execution)
            .where(
                Execution.id.in_(execution_ids),
                Execution.status_id == ExecutionStatus.QUEUED.id,
            )
            .values(queued_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def mark_unclaimed_lost(
        session: AsyncSession, execution_ids: Sequence[uuid.UUID], *, now: datetime, reason: str
    ) -> int:
        """`queued` runs no worker ever claimed end `lost` (only while still `queued`)."""
        if not execution_ids:
            return 0
        result = await session.execute(
            update(Execution)
            .where(
                Execution.id.in_(execution_ids),
                Execution.status_id == ExecutionStatus.QUEUED.id,
            )
            .values(
                status_id=ExecutionStatus.LOST.id,
                completed_at=now,
                error_type="NeverClaimed",
                error_message=reason,
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
