"""What the metrics read: pending runs, monitored schedules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.store.models import (
    Execution,
    Schedule,
)


class MonitoringStore:
    """Reads for the metrics. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

    @staticmethod
    async def count_pending(session: AsyncSession) -> int:
        result = await session.execute(
            select(func.count())
            .select_from(Execution)
            .where(Execution.status_id == ExecutionStatus.PENDING.id)
        )
        return int(result.scalar_one())

    @staticmethod
    async def monitored_schedules(session: AsyncSession, *, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` monitored schedules (by name): next slot, last success, last status."""
        if limit <= 0:
            return []
        result = await session.execute(
            text(
                "SELECT s.name, s.next_run_at, ok.completed_at AS last_success_at,"
                " st.code AS last_status"
                " FROM (SELECT id, name, next_run_at FROM schedules WHERE monitored"
                "       ORDER BY name LIMIT :limit) s"
                " LEFT JOIN LATERAL (SELECT e.completed_at FROM executions e"
                "   WHERE e.schedule_id = s.id AND e.status_id = :success"
                "   ORDER BY e.created_at DESC LIMIT 1) ok ON true"
                " LEFT JOIN LATERAL (SELECT e.status_id FROM executions e"
                "   WHERE e.schedule_id = s.id AND e.status_id = ANY(:terminal)"
                "   ORDER BY e.created_at DESC LIMIT 1) last ON true"
                " LEFT JOIN execution_statuses st ON st.id = last.status_id"
                " ORDER BY s.name"
            ),
            {
                "limit": limit,
                "success": ExecutionStatus.SUCCESS.id,
                "terminal": [s.id for s in ExecutionStatus if s.is_terminal],
            },
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def set_monitored(session: AsyncSession, pattern: str, monitored: bool) -> list[str]:
        """Mark the schedules whose name matches the anchored regex `pattern`."""
        result = await session.execute(
            update(Schedule)
            .where(Schedule.name.regexp_match(pattern))
            .values(monitored=monitored)
            .returning(Schedule.name)
            .execution_options(synchronize_session=False)
        )
        return sorted(result.scalars().all())
