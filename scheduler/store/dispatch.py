"""The beat's pass: due rows locked and read, runs inserted, schedules advanced, the outlook,
withdrawals, the manual trigger's lock, backfill's existing slots.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.domain import ExecutionStatus, OverlapPolicy
from scheduler.store.common import MESSAGE_COLUMNS, Executor, as_uuid, json_text
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    Schedule,
)

_DUE_COLUMNS = (
    Schedule.id,
    Schedule.name,
    Schedule.task,
    Schedule.cron,
    Schedule.interval_seconds,
    Schedule.run_at,
    Schedule.timezone,
    Schedule.args,
    Schedule.kwargs,
    Schedule.options,
    Schedule.start_at,
    Schedule.end_at,
    Schedule.max_runs,
    Schedule.misfire_policy,
    Schedule.misfire_grace_seconds,
    Schedule.overlap_policy,
    Schedule.jitter_seconds,
    Schedule.next_run_at,
    Schedule.last_run_at,
    Schedule.total_run_count,
    Schedule.day_match,
)


_IDENTITY_COLUMNS = (
    Schedule.id,
    Schedule.task,
    Schedule.cron,
    Schedule.interval_seconds,
    Schedule.run_at,
    Schedule.timezone,
    Schedule.start_at,
    Schedule.end_at,
    Schedule.day_match,
)
"""The columns a run written ahead depends on (besides the row existing and being enabled)."""


IDENTITY_KEYS = tuple(column.key for column in _IDENTITY_COLUMNS)


@dataclass(frozen=True)
class DueOutlook:
    uncomputed: bool
    """An enabled row has no `next_run_at` yet (new, or its timing just changed)."""
    earliest: datetime | None
    allow_within: datetime | None
    """The earliest `next_run_at` of an `allow` row, among rows due by the horizon."""
    guarded_within: datetime | None
    """The same for rows with an overlap guard (planned only when due)."""


class DispatchStore:
    """The beat's pass. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

    @staticmethod
    async def database_time(executor: Executor) -> datetime:
        """The database server's clock (`clock_timestamp()`: the instant of the read, not the
        transaction's start). Every process takes its time from here (see `scheduler.runtime.clock`)."""
        result = await executor.execute(text("SELECT clock_timestamp()"))
        value: datetime = result.scalar_one()
        return value

    @staticmethod
    async def mark_beat_transaction(session: AsyncSession) -> None:
        """Tag this transaction as the beat's: its schedule updates wake no one (see trigger)."""
        await session.execute(text("SELECT set_config('scheduler.origin', 'beat', true)"))

    @staticmethod
    async def lock_due_schedules(
        session: AsyncSession, *, now: datetime, limit: int, horizon: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Due enabled rows (or rows never computed), locked; rows other beats hold are skipped.
        With a `horizon`, `allow` rows due by then are taken too (they are planned ahead)."""
        due = Schedule.next_run_at <= now
        if horizon is not None and horizon > now:
            ahead = and_(
                Schedule.next_run_at <= horizon,
                Schedule.overlap_policy == OverlapPolicy.ALLOW.value,
            )
            due = or_(due, ahead)
        result = await session.execute(
            select(*_DUE_COLUMNS)
            .where(
                Schedule.enabled,
                or_(due, and_(Schedule.next_run_at.is_(None), Schedule.last_error.is_(None))),
            )
            .order_by(Schedule.next_run_at.asc().nulls_first())
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def run_counts(
        session: AsyncSession, schedule_ids: Sequence[int]
    ) -> dict[int, tuple[int, int]]:
        """Per schedule: (non-terminal runs, runs not yet started)."""
        if not schedule_ids:
            return {}
        waiting = Execution.status_id.in_((ExecutionStatus.PENDING.id, ExecutionStatus.QUEUED.id))
        result = await session.execute(
            select(
                Execution.schedule_id,
                func.count(),
                func.count().filter(waiting),
            )
            .where(
                Execution.schedule_id.in_(schedule_ids),
                Execution.status_id.in_(NON_TERMINAL_STATUS_IDS),
            )
            .group_by(Execution.schedule_id)
        )
        return {
            int(sid): (int(active), int(wait))
            for sid, active, wait in result.all()
            if sid is not None
        }

    @staticmethod
    async def insert_executions(
        session: AsyncSession, rows: Sequence[Mapping[str, Any]]
    ) -> set[uuid.UUID]:
        """Insert runs in one statement (arrays, so any batch size fits in one round trip);
        a slot already taken (by another beat) is skipped: a slot's run has the slot's id
        (`execution_ids.slot_execution_id`), so the primary key refuses a second one. Returns
        the inserted ids. `parent_id` and `root_id` are optional keys of a row (a retry has
        them)."""
        if not rows:
            return set()
        result = await session.execute(
            text(
                "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, "
                "scheduled_for, status_id, created_at, completed_at, parent_id, root_id) "
                "SELECT id, schedule_id, task, args::jsonb, kwargs::jsonb, trigger, scheduled_for, "
                "status_id, created_at, completed_at, parent_id, root_id FROM unnest("
                "CAST(:ids AS uuid[]), CAST(:schedule_ids AS bigint[]), CAST(:tasks AS text[]), "
                "CAST(:args AS text[]), CAST(:kwargs AS text[]), CAST(:triggers AS text[]), "
                "CAST(:scheduled_for AS timestamptz[]), CAST(:status_ids AS smallint[]), "
                "CAST(:created_at AS timestamptz[]), CAST(:completed_at AS timestamptz[]), "
                "CAST(:parent_ids AS uuid[]), CAST(:root_ids AS uuid[])) "
                "AS r(id, schedule_id, task, args, kwargs, trigger, scheduled_for, status_id, "
                "created_at, completed_at, parent_id, root_id) "
                "ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            {
                "ids": [r["id"] for r in rows],
                "schedule_ids": [r["schedule_id"] for r in rows],
                "tasks": [r["task"] for r in rows],
                "args": [json_text(r["args"]) for r in rows],
                "kwargs": [json_text(r["kwargs"]) for r in rows],
                "triggers": [r["trigger"] for r in rows],
                "scheduled_for": [r["scheduled_for"] for r in rows],
                "status_ids": [r["status_id"] for r in rows],
                "created_at": [r["created_at"] for r in rows],
                "completed_at": [r["completed_at"] for r in rows],
                "parent_ids": [r.get("parent_id") for r in rows],
                "root_ids": [r.get("root_id") for r in rows],
            },
        )
        return {as_uuid(v) for v in result.scalars().all()}

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
    async def update_schedules(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Set next_run_at, last_run_at, enabled and last_error of many rows and add each
        row's `runs_added` (runs actually inserted) to total_run_count, in one statement."""
        if not rows:
            return
        await session.execute(
            text(
                "UPDATE schedules s SET next_run_at = u.next_run_at, last_run_at = u.last_run_at, "
                "enabled = u.enabled, last_error = u.last_error, "
                "total_run_count = s.total_run_count + u.runs_added FROM unnest("
                "CAST(:ids AS bigint[]), CAST(:next AS timestamptz[]), "
                "CAST(:last AS timestamptz[]), CAST(:enabled AS boolean[]), "
                "CAST(:errors AS text[]), CAST(:runs AS bigint[])) "
                "AS u(id, next_run_at, last_run_at, enabled, last_error, runs_added) "
                "WHERE s.id = u.id"
            ),
            {
                "ids": [r["id"] for r in rows],
                "next": [r["next_run_at"] for r in rows],
                "last": [r["last_run_at"] for r in rows],
                "enabled": [r["enabled"] for r in rows],
                "errors": [r["last_error"] for r in rows],
                "runs": [r.get("runs_added", 0) for r in rows],
            },
        )

    @staticmethod
    async def due_outlook(session: AsyncSession, *, horizon: datetime) -> DueOutlook:
        """What the beat needs to know when to wake, in one round trip: whether a row awaits
        its first computation, the earliest `next_run_at`, and the earliest of `allow` rows
        and of guarded rows due by `horizon`. Each part is an index scan bounded by the
        horizon, so the idle cost does not grow with the number of schedules."""
        uncomputed = (
            select(Schedule.id)
            .where(Schedule.enabled, Schedule.next_run_at.is_(None), Schedule.last_error.is_(None))
            .exists()
        )
        allow = Schedule.overlap_policy == OverlapPolicy.ALLOW.value

        def earliest(*where: Any) -> Any:
            return (
                select(func.min(Schedule.next_run_at))
                .where(Schedule.enabled, *where)
                .scalar_subquery()
            )

        within = Schedule.next_run_at <= horizon
        row = (
            await session.execute(
                select(uncomputed, earliest(), earliest(within, allow), earliest(within, ~allow))
            )
        ).one()
        return DueOutlook(
            uncomputed=bool(row[0]), earliest=row[1], allow_within=row[2], guarded_within=row[3]
        )

    @staticmethod
    async def allow_due_profile(
        session: AsyncSession, *, now: datetime, until: datetime, step_s: float
    ) -> list[tuple[float, int]]:
        """Enabled `allow` rows due by `until`, counted per step of `step_s` seconds: (the
        step's end as an offset from `now`, rows due in it), ascending; rows already due
        fall in steps ending at or before zero. One range scan of the due index."""
        result = await session.execute(
            text(
                "SELECT ceil(extract(epoch FROM next_run_at - :now) / :step) * :step AS upper, "
                "count(*) FROM schedules WHERE enabled AND next_run_at <= :until "
                "AND overlap_policy = :allow GROUP BY 1 ORDER BY 1"
            ),
            {"now": now, "until": until, "step": step_s, "allow": OverlapPolicy.ALLOW.value},
        )
        return [(float(upper), int(count)) for upper, count in result.all()]

    @staticmethod
    async def schedule_identities(
        session: AsyncSession, schedule_ids: Sequence[int]
    ) -> dict[int, dict[str, Any]]:
        """What a run written ahead depends on: the task, the timing and whether the row was
        disabled by hand (a disable keeps `next_run_at`; an end of life clears it); and when
        the row was last edited (beats' own updates leave `updated_at` alone)."""
        if not schedule_ids:
            return {}
        result = await session.execute(
            select(
                *_IDENTITY_COLUMNS, Schedule.enabled, Schedule.next_run_at, Schedule.updated_at
            ).where(Schedule.id.in_(schedule_ids))
        )
        return {int(row["id"]): dict(row) for row in result.mappings()}

    @staticmethod
    async def withdraw_runs(session: AsyncSession, execution_ids: Sequence[uuid.UUID]) -> int:
        """Delete runs written ahead and never published (still `pending`), and take them
        back off their schedules' `total_run_count`. The transaction is tagged as the beat's:
        this bookkeeping must neither wake the beats nor move `updated_at`, the instant of the
        hand edit that later withdrawals (by other beats, by the sweep) compare slots with."""
        if not execution_ids:
            return 0
        await DispatchStore.mark_beat_transaction(session)
        result = await session.execute(
            text(
                "WITH gone AS (DELETE FROM executions WHERE id = ANY(CAST(:ids AS uuid[])) "
                "AND status_id = :pending RETURNING schedule_id), "
                "counts AS (SELECT schedule_id, count(*) AS n FROM gone GROUP BY schedule_id), "
                "fixed AS (UPDATE schedules s SET total_run_count = greatest(0, "
                "s.total_run_count - counts.n) FROM counts WHERE s.id = counts.schedule_id) "
                "SELECT coalesce(sum(n), 0) FROM counts"
            ),
            {"ids": list(execution_ids), "pending": ExecutionStatus.PENDING.id},
        )
        return int(result.scalar_one())

    @staticmethod
    async def clear_beat_errors(session: AsyncSession) -> dict[int, str]:
        """Let the beat look again at rows it flagged (a task may be registered now); returns
        the errors cleared, by schedule id."""
        result = await session.execute(
            text(
                "UPDATE schedules s SET last_error = NULL, next_run_at = NULL "
                "FROM (SELECT id, last_error FROM schedules "
                "      WHERE last_error IS NOT NULL AND enabled FOR UPDATE) old "
                "WHERE s.id = old.id RETURNING old.id, old.last_error"
            )
        )
        return {int(row[0]): str(row[1]) for row in result.all()}

    @staticmethod
    async def lock_schedule_for_trigger(session: AsyncSession, name: str) -> dict[str, Any] | None:
        """Lock the named schedule and return its row with run counts; None if unknown."""
        result = await session.execute(
            select(*_DUE_COLUMNS).where(Schedule.name == name).with_for_update()
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
