"""Runs asked for by hand: the schedule row locked for a trigger or a backfill, the run a retry
repeats, the slots a backfill finds already run."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.store.common import MESSAGE_COLUMNS
from scheduler.store.dispatch import DUE_COLUMNS, DispatchStore
from scheduler.store.models import Execution, Schedule


class ManualRunStore:
    """Manual runs. Stateless: every method is static and takes the caller's session; none
    commits."""

    @staticmethod
    async def lock_run_for_retry(
        session: AsyncSession, execution_id: uuid.UUID
    ) -> dict[str, Any] | None:
        """Lock run `execution_id` and return what a retry of it copies (with its schedule's
        options, None without a schedule) and its status id; None if it does not exist."""
        result = await session.execute(
            select(*MESSAGE_COLUMNS, Execution.status_id, Execution.root_id)
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(Execution.id == execution_id)
            .with_for_update(of=Execution)
        )
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def lock_schedule_for_trigger(session: AsyncSession, name: str) -> dict[str, Any] | None:
        """Lock the named schedule and return its row with run counts; None if unknown."""
        result = await session.execute(
            select(*DUE_COLUMNS).where(Schedule.name == name).with_for_update()
        )
        row = result.mappings().first()
        if row is None:
            return None
        values = dict(row)
        counts = await DispatchStore.run_counts(session, [values["id"]])
        values["active_runs"], values["waiting_runs"] = counts.get(values["id"], (0, 0))
        return values

    @staticmethod
    async def existing_slots(
        session: AsyncSession, schedule_id: int, slots: Sequence[datetime]
    ) -> set[datetime]:
        """Which of `slots` already have a run of the schedule (any status)."""
        if not slots:
            return set()
        result = await session.execute(
            select(Execution.scheduled_for).where(
                Execution.schedule_id == schedule_id, Execution.scheduled_for.in_(list(slots))
            )
        )
        return {v for v in result.scalars().all() if v is not None}
