"""Every SQL statement of the project lives here.

Functions are async, take the caller's `AsyncSession` and never commit: the caller owns the
transaction (one unit of work, retried whole). `SchedulerRepository` keeps the seed's API:
`await SchedulerRepository().get_execution_status_by_code(session, "success")` and
`await SchedulerRepository().update_execution(session, execution_id, {...})` work unchanged,
called on the class or on an instance.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.models import Execution, ExecutionStatusRow, Schedule


class SchedulerRepository:
    """The data access API. Stateless: every method is a static method."""

    # --- Lookups ----------------------------------------------------------------------

    @staticmethod
    async def get_execution_status_by_code(
        session: AsyncSession, code: str
    ) -> ExecutionStatusRow | None:
        result = await session.execute(
            select(ExecutionStatusRow).where(ExecutionStatusRow.code == code)
        )
        return result.scalar_one_or_none()

    @staticmethod
    async def list_execution_statuses(session: AsyncSession) -> Sequence[ExecutionStatusRow]:
        result = await session.execute(select(ExecutionStatusRow).order_by(ExecutionStatusRow.id))
        return result.scalars().all()

    # --- Executions -------------------------------------------------------------------

    @staticmethod
    async def update_execution(
        session: AsyncSession, execution_id: uuid.UUID | str, values: Mapping[str, Any]
    ) -> int:
        """Set `values` on one execution row; return how many rows changed (0 or 1)."""
        result = await session.execute(
            update(Execution)
            .where(Execution.id == _as_uuid(execution_id))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def get_execution(
        session: AsyncSession, execution_id: uuid.UUID | str
    ) -> Execution | None:
        return await session.get(Execution, _as_uuid(execution_id))

    # --- Schedules --------------------------------------------------------------------

    @staticmethod
    async def get_schedule_by_name(session: AsyncSession, name: str) -> Schedule | None:
        result = await session.execute(select(Schedule).where(Schedule.name == name))
        return result.scalar_one_or_none()

    @staticmethod
    async def create_schedules_if_absent(
        session: AsyncSession, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Insert each row whose name is not taken; return how many were created."""
        created = 0
        for row in rows:
            result = await session.execute(
                pg_insert(Schedule)
                .values(**row)
                .on_conflict_do_nothing(index_elements=[Schedule.name])
                .returning(Schedule.id)
            )
            created += len(result.all())
        return created


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
