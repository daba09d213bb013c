"""Schedule rows: lookups, inserts, edits, pause and resume, the definition locks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import DuplicateError
from scheduler.store.models import (
    Execution,
    ExecutionStatusRow,
    Schedule,
)


class ScheduleStore:
    """Schedule rows. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

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

    @staticmethod
    async def lock_config_sync(session: AsyncSession) -> None:
        """Serialize the `beat_schedule` sync of beats starting together (until commit)."""
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('scheduler.config_sync'))")
        )

    @staticmethod
    async def list_schedules(
        session: AsyncSession,
        *,
        names: Sequence[str] | None = None,
        origin: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every schedule (or the named ones, and with `origin` those of that origin too) with
        the status code of its last run (the newest that has started or finished, or was
        recorded missed/skipped: a run written ahead or waiting on the broker is not "last") and
        how many runs are upcoming (pending, queued)."""
        last = (
            select(ExecutionStatusRow.code)
            .join(Execution, Execution.status_id == ExecutionStatusRow.id)
            .where(
                Execution.schedule_id == Schedule.id,
                or_(Execution.started_at.is_not(None), Execution.completed_at.is_not(None)),
            )
            .order_by(Execution.created_at.desc())
            .limit(1)
            .correlate(Schedule)
            .scalar_subquery()
        )
        upcoming = (
            select(func.count())
            .where(
                Execution.schedule_id == Schedule.id,
                Execution.status_id.in_((ExecutionStatus.PENDING.id, ExecutionStatus.QUEUED.id)),
            )
            .correlate(Schedule)
            .scalar_subquery()
        )
        stmt = select(
            Schedule, last.label("last_status"), upcoming.label("upcoming_runs")
        ).order_by(Schedule.name)
        chosen: list[ColumnElement[bool]] = [Schedule.name.in_(names)] if names is not None else []
        if origin is not None:
            chosen.append(Schedule.origin == origin)
        if chosen:
            stmt = stmt.where(or_(*chosen))
        result = await session.execute(stmt)
        return [
            {
                **{c.name: getattr(row, c.name) for c in Schedule.__table__.columns},
                "last_status": status,
                "upcoming_runs": int(upcoming_runs or 0),
            }
            for row, status, upcoming_runs in result.all()
        ]

    @staticmethod
    async def pause_schedule(
        session: AsyncSession, name: str, *, reason: str, actor: str | None
    ) -> bool:
        """Disable the named schedule, noting why, who and when; False if there is none."""
        result = await session.execute(
            update(Schedule)
            .where(Schedule.name == name)
            .values(enabled=False, paused_reason=reason, paused_by=actor, paused_at=func.now())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def resume_schedule(session: AsyncSession, name: str) -> bool:
        """Enable the named schedule (a trigger clears the pause annotation of any enabled
        row); False if there is none."""
        result = await session.execute(
            update(Schedule)
            .where(Schedule.name == name)
            .values(enabled=True)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def insert_schedule(session: AsyncSession, values: Mapping[str, Any]) -> int:
        result = await session.execute(
            pg_insert(Schedule)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Schedule.name])
            .returning(Schedule.id)
        )
        new_id = result.scalar()
        if new_id is None:
            raise DuplicateError(
                f"a schedule named {values['name']!r} exists: use `scheduler schedules update`"
            )
        return int(new_id)

    @staticmethod
    async def insert_schedules(
        session: AsyncSession, rows: Sequence[Mapping[str, Any]], *, chunk: int = 1000
    ) -> None:
        """Insert many definitions in multi-row statements; DuplicateError if a name exists."""
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            # the Core table with a list of parameter sets: one compiled statement sent as
            # multi-row INSERTs (compiling a 1,000-row `.values(rows)`, or the ORM's bulk
            # path, costs seconds per thousand rows)
            result = await session.execute(
                pg_insert(Schedule.metadata.tables[Schedule.__tablename__])
                .on_conflict_do_nothing(index_elements=[Schedule.name])
                .returning(Schedule.name),
                list(part),
            )
            inserted = set(result.scalars())
            missing = [r["name"] for r in part if r["name"] not in inserted]
            if missing:
                raise DuplicateError(
                    f"a schedule named {missing[0]!r} exists: use `scheduler schedules update`"
                )

    @staticmethod
    async def lock_definitions(session: AsyncSession) -> None:
        """Serialise whole-set changes of the definitions (apply, prune, import): a
        transaction-scoped advisory lock, released at commit or rollback."""
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('scheduler.apply'))"))

    @staticmethod
    async def update_schedule(session: AsyncSession, name: str, values: Mapping[str, Any]) -> bool:
        result = await session.execute(
            update(Schedule)
            .where(Schedule.name == name)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def delete_schedule(session: AsyncSession, name: str) -> bool:
        result = await session.execute(
            delete(Schedule)
            .where(Schedule.name == name)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
