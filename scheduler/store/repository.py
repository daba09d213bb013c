"""Every SQL statement of the project lives here.

Functions are async, take the caller's `AsyncSession` and never commit: the caller owns the
transaction (one unit of work, retried whole). `SchedulerRepository` keeps the seed's API:
`await SchedulerRepository().get_execution_status_by_code(session, "success")` and
`await SchedulerRepository().update_execution(session, execution_id, {...})` work unchanged,
called on the class or on an instance.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from scheduler.core.domain import ExecutionStatus, OverlapPolicy
from scheduler.core.exceptions import DuplicateError, ScheduleNotFound
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    ExecutionStatusRow,
    NotificationDelivery,
    NotificationRule,
    Schedule,
)

FAILURE_STATUS_IDS = (
    ExecutionStatus.FAILED.id,
    ExecutionStatus.TIMEOUT.id,
    ExecutionStatus.LOST.id,
)
"""Terminal failures: what `pause_after_failures` counts."""

Executor = AsyncSession | AsyncConnection
"""What the hot-path writes accept: a session, or a bare (autocommit) connection."""

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
_MESSAGE_COLUMNS = (
    Execution.id,
    Execution.task,
    Execution.args,
    Execution.kwargs,
    Execution.schedule_id,
    Schedule.options,
)
"""What publishing a run again needs (select with an outer join on its schedule)."""


def _json_text(value: Any) -> str:
    """`json.dumps`, with the usual empty values of args and kwargs spelled out."""
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"
    return json.dumps(value)


@dataclass(frozen=True)
class DueOutlook:
    uncomputed: bool
    """An enabled row has no `next_run_at` yet (new, or its timing just changed)."""
    earliest: datetime | None
    allow_within: datetime | None
    """The earliest `next_run_at` of an `allow` row, among rows due by the horizon."""
    guarded_within: datetime | None
    """The same for rows with an overlap guard (planned only when due)."""


class Attempt(int):
    """An attempt number that also tells how long the run waited (started minus queued,
    None for a run made outside the beat): read by the metrics."""

    queue_s: float | None

    def __new__(cls, value: int, *, queue_s: float | None = None) -> Attempt:
        attempt = super().__new__(cls, value)
        attempt.queue_s = queue_s
        return attempt


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

    # --- Clock --------------------------------------------------------------------------

    @staticmethod
    async def database_time(executor: Executor) -> datetime:
        """The database server's clock (`clock_timestamp()`: the instant of the read, not the
        transaction's start). Every process takes its time from here (see `scheduler.runtime.clock`)."""
        result = await executor.execute(text("SELECT clock_timestamp()"))
        value: datetime = result.scalar_one()
        return value

    @staticmethod
    async def lock_config_sync(session: AsyncSession) -> None:
        """Serialize the `beat_schedule` sync of beats starting together (until commit)."""
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('scheduler.config_sync'))")
        )

    # --- Beat ---------------------------------------------------------------------------

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
                "args": [_json_text(r["args"]) for r in rows],
                "kwargs": [_json_text(r["kwargs"]) for r in rows],
                "triggers": [r["trigger"] for r in rows],
                "scheduled_for": [r["scheduled_for"] for r in rows],
                "status_ids": [r["status_id"] for r in rows],
                "created_at": [r["created_at"] for r in rows],
                "completed_at": [r["completed_at"] for r in rows],
                "parent_ids": [r.get("parent_id") for r in rows],
                "root_ids": [r.get("root_id") for r in rows],
            },
        )
        return {_as_uuid(v) for v in result.scalars().all()}

    @staticmethod
    async def lock_run_for_retry(
        session: AsyncSession, execution_id: uuid.UUID
    ) -> dict[str, Any] | None:
        """Lock run `execution_id` and return what a retry of it copies (with its schedule's
        options, None without a schedule) and its status id; None if it does not exist."""
        result = await session.execute(
            select(*_MESSAGE_COLUMNS, Execution.status_id, Execution.root_id)
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
        result = await session.execute(
            text(
                "UPDATE executions SET queued_at = :now, status_id = CASE WHEN status_id = "
                ":pending THEN :queued ELSE status_id END "
                "WHERE id = ANY(CAST(:ids AS uuid[])) AND queued_at IS NULL"
            ),
            {
                "queued": ExecutionStatus.QUEUED.id,
                "pending": ExecutionStatus.PENDING.id,
                "now": now,
                "ids": list(execution_ids),
            },
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

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
            select(*_MESSAGE_COLUMNS, and_(written_ahead, disabled).label("withdraw"))
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
            select(*_MESSAGE_COLUMNS)
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
                *_MESSAGE_COLUMNS,
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
        await SchedulerRepository.mark_beat_transaction(session)
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
        counts = await SchedulerRepository.run_counts(session, [values["id"]])
        values["active_runs"], values["waiting_runs"] = counts.get(values["id"], (0, 0))
        return values

    # --- Tracking -----------------------------------------------------------------------

    # The run path (claim, finish, progress) is plain SQL on the asyncpg connection under
    # the process's held bookkeeping connection: asyncpg keeps each prepared statement per
    # connection, so a call is one round trip and ~0.5 ms, against ~1.5 ms of statement
    # construction and compilation per call through SQLAlchemy. Status ids are fixed.

    _CLAIM_SQL = (
        "INSERT INTO executions AS e (id, task, args, kwargs, trigger, status_id, created_at,"
        " started_at, worker, attempt, parent_id, root_id)"
        f" VALUES ($1, $2, $3, $4, 'direct', {ExecutionStatus.RUNNING.id}, $5, $5, $6, 1, $8, $9)"
        f" ON CONFLICT (id) DO UPDATE SET status_id = {ExecutionStatus.RUNNING.id},"
        " started_at = EXCLUDED.started_at, worker = EXCLUDED.worker,"
        " attempt = e.attempt + 1, completed_at = NULL,"
        " parent_id = coalesce(e.parent_id, EXCLUDED.parent_id),"
        " root_id = coalesce(e.root_id, EXCLUDED.root_id)"
        " WHERE (e.status_id = ANY($7::smallint[])"
        # a run the beat gave up on as never claimed still runs if its message turns up
        f" OR (e.status_id = {ExecutionStatus.LOST.id} AND e.error_type = 'NeverClaimed'"
        " AND e.started_at IS NULL)) AND e.task = EXCLUDED.task"
        " RETURNING e.attempt, extract(epoch FROM e.started_at - e.queued_at)::float8"
    )
    _FINISH_SQL = (
        "UPDATE executions SET status_id = $2, duration_ms = $3, completed_at = $4,"
        " result_summary = $5, error_type = $6, error_message = $7, traceback = $8,"
        " progress = COALESCE($9::jsonb, progress)"
        # `status_id + 0`: the primary key finds the row, never ix_executions_active (a
        # generic plan may pick it when the statistics hold no running row, then scan every
        # running and dead entry: 12 ms a finish in docs/BENCHMARKS.md, "History at scale")
        f" WHERE id = $1 AND status_id + 0 = {ExecutionStatus.RUNNING.id}"
    )
    _FINISH_RETURNING_SQL = (
        _FINISH_SQL + " RETURNING schedule_id, (SELECT s.overlap_policy = 'buffer_one'"
        " OR (s.pause_after_failures IS NOT NULL AND s.enabled AND $2 = ANY($10::smallint[]))"
        " FROM schedules s WHERE s.id = executions.schedule_id) AS follow_up"
    )
    _PROGRESS_SQL = (
        "UPDATE executions SET progress = $2::jsonb"
        f" WHERE id = $1 AND status_id + 0 = {ExecutionStatus.RUNNING.id}"
    )
    _CLAIMABLE = [
        ExecutionStatus.PENDING.id,
        ExecutionStatus.QUEUED.id,
        ExecutionStatus.RETRYING.id,
    ]

    @staticmethod
    async def claim_execution(
        driver: Any,
        execution_id: uuid.UUID | str,
        *,
        task: str,
        args_json: str,
        kwargs_json: str,
        worker: str,
        now: datetime,
        reclaim_running: bool = False,
        parent_id: uuid.UUID | str | None = None,
        root_id: uuid.UUID | str | None = None,
    ) -> int | None:
        """Start a run in one statement: claim its row (pending|queued|retrying -> running,
        started_at, worker, attempt + 1), or create it with trigger `direct` for a call made
        outside the beat. Returns the attempt number, or None when the execution is already
        running or finished (a duplicate delivery: run nothing). `reclaim_running` lets a
        redelivered acks_late message take over a run whose worker died. `parent_id` and
        `root_id` are Celery's (the task that sent this one, the first of its tree).

        `driver` is an asyncpg connection (see `driver_connection`); args/kwargs are JSON text.
        """
        claimable = SchedulerRepository._CLAIMABLE
        if reclaim_running:
            claimable = [*claimable, ExecutionStatus.RUNNING.id]
        row = await driver.fetchrow(
            SchedulerRepository._CLAIM_SQL,
            _as_uuid(execution_id),
            task,
            args_json,
            kwargs_json,
            now,
            worker,
            claimable,
            _uuid_or_none(parent_id),
            _uuid_or_none(root_id),
        )
        return None if row is None else Attempt(row[0], queue_s=row[1])

    @staticmethod
    async def execution_task(driver: Any, execution_id: uuid.UUID | str) -> str | None:
        """The task an execution row is a run of (None: no such row)."""
        value = await driver.fetchval(
            "SELECT task FROM executions WHERE id = $1", _as_uuid(execution_id)
        )
        return None if value is None else str(value)

    @staticmethod
    async def finish_run(
        driver: Any,
        execution_id: uuid.UUID | str,
        *,
        status_id: int,
        duration_ms: int,
        completed_at: datetime | None,
        result_summary: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        traceback: str | None = None,
        progress_json: str | None = None,
    ) -> bool:
        """Write a run's outcome in one statement; only a `running` row changes. Every
        outcome column is written (a success clears the error of an earlier attempt);
        `progress` is kept when `progress_json` is None. True when the row changed."""
        status = await driver.execute(
            SchedulerRepository._FINISH_SQL,
            _as_uuid(execution_id),
            status_id,
            duration_ms,
            completed_at,
            result_summary,
            error_type,
            error_message,
            traceback,
            progress_json,
        )
        return bool(status == "UPDATE 1")

    @staticmethod
    async def finish_run_returning(
        driver: Any,
        execution_id: uuid.UUID | str,
        *,
        status_id: int,
        duration_ms: int,
        completed_at: datetime | None,
        result_summary: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        traceback: str | None = None,
        progress_json: str | None = None,
    ) -> tuple[int | None, bool] | None:
        """`finish_run`, returning (schedule_id, whether the outcome has a follow-up: a
        `buffer_one` schedule may release its buffered run, a failure may pause the schedule);
        None when the row did not change."""
        row = await driver.fetchrow(
            SchedulerRepository._FINISH_RETURNING_SQL,
            _as_uuid(execution_id),
            status_id,
            duration_ms,
            completed_at,
            result_summary,
            error_type,
            error_message,
            traceback,
            progress_json,
            list(FAILURE_STATUS_IDS),
        )
        if row is None:
            return None
        if row["schedule_id"] is None:
            return None, False
        return int(row["schedule_id"]), bool(row["follow_up"])

    # --- After an outcome: auto-pause and the buffered run ------------------------------
    # Plain SQL on the asyncpg connection (a session's, or the worker's held one), inside the
    # caller's transaction. The schedule row is locked first, so two outcomes of one schedule
    # written at once are judged one after the other, each seeing the other's outcome.

    _LOCK_FOLLOW_UP_SQL = (
        "SELECT id FROM schedules WHERE id = ANY($1::bigint[]) AND (overlap_policy = 'buffer_one'"
        " OR (pause_after_failures IS NOT NULL AND enabled AND $2)) ORDER BY id FOR NO KEY UPDATE"
    )
    _AUTO_PAUSE_SQL = (
        "UPDATE schedules s SET enabled = false, paused_by = $2, paused_at = now(),"
        " paused_reason = 'paused after ' || s.pause_after_failures"
        " || ' consecutive failures (last: ' || r.last_error || ')'"
        " FROM (SELECT count(*) FILTER (WHERE t.status_id <> "
        f"{ExecutionStatus.SUCCESS.id}) AS failures,"
        " (array_agg(t.error ORDER BY t.created_at DESC))[1] AS last_error"
        " FROM (SELECT e.status_id, e.created_at, left(split_part(coalesce(e.error_message,"
        " e.error_type, 'no error recorded'), E'\\n', 1), 200) AS error"
        " FROM executions e JOIN schedules p ON p.id = e.schedule_id"
        " WHERE e.schedule_id = $1 AND e.status_id = ANY($3::smallint[])"
        " AND e.completed_at >= p.updated_at ORDER BY e.created_at DESC"
        " LIMIT (SELECT pause_after_failures FROM schedules WHERE id = $1)) t) r"
        " WHERE s.id = $1 AND s.enabled AND s.pause_after_failures IS NOT NULL"
        " AND r.failures >= s.pause_after_failures RETURNING s.name, s.paused_reason"
    )
    _RELEASE_SQL = (
        "SELECT e.id, e.task, e.args, e.kwargs, e.schedule_id, s.options"
        " FROM executions e JOIN schedules s ON s.id = e.schedule_id"
        f" WHERE e.schedule_id = $1 AND e.status_id = {ExecutionStatus.PENDING.id}"
        " AND s.overlap_policy = 'buffer_one' AND NOT EXISTS (SELECT 1 FROM executions o"
        " WHERE o.schedule_id = $1 AND o.status_id = ANY($2::smallint[]))"
        " ORDER BY e.created_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED"
    )
    _MARK_QUEUED_SQL = (
        f"UPDATE executions SET queued_at = now(), status_id = {ExecutionStatus.QUEUED.id}"
        f" WHERE id = ANY($1::uuid[]) AND status_id = {ExecutionStatus.PENDING.id}"
    )

    @staticmethod
    async def lock_for_follow_up(
        driver: Any, schedule_ids: Sequence[int], *, failed: bool
    ) -> list[int]:
        """Lock (in id order) the schedules an outcome may act on; returns their ids."""
        if not schedule_ids:
            return []
        rows = await driver.fetch(
            SchedulerRepository._LOCK_FOLLOW_UP_SQL, sorted(set(schedule_ids)), failed
        )
        return [int(r["id"]) for r in rows]

    @staticmethod
    async def pause_after_failures(
        driver: Any, schedule_id: int, *, actor: str
    ) -> tuple[str, str] | None:
        """Pause the (locked) schedule when its last `pause_after_failures` terminal runs
        since it was last edited or resumed all failed (failed, timeout, lost; successes
        break the streak; skipped, missed and revoked runs do not count). Returns (name,
        reason) when this call paused it; an already paused schedule is left alone."""
        row = await driver.fetchrow(
            SchedulerRepository._AUTO_PAUSE_SQL,
            schedule_id,
            actor,
            [ExecutionStatus.SUCCESS.id, *FAILURE_STATUS_IDS],
        )
        return None if row is None else (str(row["name"]), str(row["paused_reason"]))

    @staticmethod
    async def take_buffered_run(driver: Any, schedule_id: int) -> dict[str, Any] | None:
        """The run a `buffer_one` schedule holds back (its oldest `pending` run), locked, when
        no run of the schedule is queued, running or retrying any more; else None."""
        row = await driver.fetchrow(
            SchedulerRepository._RELEASE_SQL,
            schedule_id,
            [ExecutionStatus.QUEUED.id, ExecutionStatus.RUNNING.id, ExecutionStatus.RETRYING.id],
        )
        if row is None:
            return None
        values = dict(row)
        for key in ("args", "kwargs", "options"):
            if isinstance(values[key], str):
                values[key] = json.loads(values[key])
        return values

    @staticmethod
    async def mark_released(driver: Any, execution_ids: Sequence[uuid.UUID]) -> int:
        """Released runs confirmed on the broker: `queued`."""
        if not execution_ids:
            return 0
        status = await driver.execute(SchedulerRepository._MARK_QUEUED_SQL, list(execution_ids))
        return int(str(status).rsplit(" ", 1)[-1])

    @staticmethod
    async def record_progress(
        driver: Any, execution_id: uuid.UUID | str, progress_json: str
    ) -> None:
        """Store a running execution's progress (JSON text {current, total, percent})."""
        await driver.execute(
            SchedulerRepository._PROGRESS_SQL, _as_uuid(execution_id), progress_json
        )

    @staticmethod
    async def driver_connection(connection: AsyncConnection) -> Any:
        """The asyncpg connection under a SQLAlchemy connection (for the run path above)."""
        raw = await connection.get_raw_connection()
        return raw.driver_connection

    @staticmethod
    async def finish_execution(
        session: Executor,
        execution_id: uuid.UUID | str,
        values: Mapping[str, Any],
        *,
        from_any_live_state: bool = False,
    ) -> int:
        """Write a run's outcome. Only a running row changes (or, for outcomes learnt outside
        the run such as a hard time limit or a revoke, any non-terminal row)."""
        allowed = NON_TERMINAL_STATUS_IDS if from_any_live_state else (ExecutionStatus.RUNNING.id,)
        stmt = (
            update(Execution)
            .where(Execution.id == _as_uuid(execution_id), Execution.status_id.in_(allowed))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if from_any_live_state and "duration_ms" not in values:
            stmt = stmt.values(
                duration_ms=func.coalesce(
                    (func.extract("epoch", func.now() - Execution.started_at) * 1000).cast(Integer),
                    0,
                )
            )
        result = await session.execute(stmt)
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def running_executions(session: AsyncSession) -> list[dict[str, Any]]:
        """Runs marked running: id, task, worker, started_at (for the reaper)."""
        result = await session.execute(
            select(Execution.id, Execution.task, Execution.worker, Execution.started_at).where(
                Execution.status_id == ExecutionStatus.RUNNING.id
            )
        )
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def mark_lost(
        session: AsyncSession, execution_ids: Sequence[uuid.UUID], *, now: datetime, reason: str
    ) -> int:
        return len(
            await SchedulerRepository.mark_lost_returning(
                session, execution_ids, now=now, reason=reason
            )
        )

    @staticmethod
    async def mark_lost_returning(
        session: AsyncSession, execution_ids: Sequence[uuid.UUID], *, now: datetime, reason: str
    ) -> list[int | None]:
        """`mark_lost`, returning the schedule id (or None) of each run it marked."""
        if not execution_ids:
            return []
        result = await session.execute(
            update(Execution)
            .where(
                Execution.id.in_(execution_ids),
                Execution.status_id == ExecutionStatus.RUNNING.id,
            )
            .values(
                status_id=ExecutionStatus.LOST.id,
                completed_at=now,
                error_type="WorkerLost",
                error_message=reason,
                duration_ms=(func.extract("epoch", now - Execution.started_at) * 1000).cast(
                    Integer
                ),
            )
            .returning(Execution.schedule_id)
            .execution_options(synchronize_session=False)
        )
        return [None if sid is None else int(sid) for sid in result.scalars().all()]

    # --- Schedules (definitions) --------------------------------------------------------

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

    @staticmethod
    async def run_tree(
        session: AsyncSession, execution_id: uuid.UUID | str
    ) -> list[dict[str, Any]]:
        """Every run of the tree `execution_id` belongs to (its root and every run whose
        root_id is that root), oldest first; empty when the execution does not exist."""
        key = _as_uuid(execution_id)
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
        return [_with_status(dict(r)) for r in result.mappings()]

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

    # --- History & stats ----------------------------------------------------------------

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
            key = _as_uuid(root)
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
        return [_with_status(dict(r)) for r in result.mappings()]

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
            .where(Execution.id == _as_uuid(execution_id))
        )
        row = result.mappings().first()
        return None if row is None else _with_status(dict(row))

    @staticmethod
    async def stats(
        session: AsyncSession, *, since: datetime, schedule: str | None = None
    ) -> list[dict[str, Any]]:
        """Per schedule (or task, for runs without one): counts, success rate, durations."""
        done = Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS)

        def count_of(code: ExecutionStatus) -> Any:
            return func.count().filter(Execution.status_id == code.id)

        key = func.coalesce(Schedule.name, "(task) " + Execution.task)
        stmt = (
            select(
                key.label("schedule"),
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
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(Execution.created_at >= since)
            .group_by(key)
            .order_by(key)
        )
        if schedule is not None:
            stmt = stmt.where(Schedule.name == schedule)
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


def _with_status(row: dict[str, Any]) -> dict[str, Any]:
    row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
    return row


def _uuid_or_none(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return _as_uuid(value)
    except ValueError:
        return None  # a task id that is not a UUID (sent by hand): no link


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


class ObservabilityRepository:
    """What the metrics read: bounded queries, safe to run every few seconds."""

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


_RULE_COLUMNS = (
    "name",
    "schedules",
    "events",
    "webhook_url",
    "task",
    "late_after_s",
    "stale_after_s",
    "only_final_attempt",
    "enabled",
    "created_at",
)


class AlertsRepository:
    """Notification rules and their deliveries (see migration 0008 for the triggers that
    write deliveries of run events in the transaction recording the run)."""

    @staticmethod
    async def insert_rule(session: AsyncSession, values: Mapping[str, Any]) -> int:
        result = await session.execute(
            pg_insert(NotificationRule)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[NotificationRule.name])
            .returning(NotificationRule.id)
        )
        new_id = result.scalar()
        if new_id is None:
            raise DuplicateError(f"an alert rule named {values['name']!r} exists: remove it first")
        return int(new_id)

    @staticmethod
    async def list_rules(session: AsyncSession) -> list[dict[str, Any]]:
        """Every rule (secrets left out) with its delivery counts."""
        sent = func.count().filter(NotificationDelivery.status == "sent")
        pending = func.count().filter(NotificationDelivery.status == "pending")
        stmt = (
            select(
                *(getattr(NotificationRule, c) for c in _RULE_COLUMNS),
                (NotificationRule.secret.is_not(None)).label("signed"),
                sent.label("sent"),
                pending.label("pending"),
            )
            .outerjoin(NotificationDelivery, NotificationDelivery.rule_id == NotificationRule.id)
            .group_by(NotificationRule.id)
            .order_by(NotificationRule.name)
        )
        return [dict(row) for row in (await session.execute(stmt)).mappings()]

    @staticmethod
    async def get_rule(session: AsyncSession, name: str) -> dict[str, Any] | None:
        result = await session.execute(
            select(NotificationRule.__table__).where(NotificationRule.name == name)
        )
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def delete_rule(session: AsyncSession, name: str) -> bool:
        result = await session.execute(
            delete(NotificationRule)
            .where(NotificationRule.name == name)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def insert_delivery(session: AsyncSession, values: Mapping[str, Any]) -> uuid.UUID:
        result = await session.execute(
            pg_insert(NotificationDelivery).values(**values).returning(NotificationDelivery.id)
        )
        return uuid.UUID(str(result.scalar_one()))

    @staticmethod
    async def insert_stale(session: AsyncSession, *, limit: int) -> int:
        """One `stale` delivery per rule and schedule whose last success (or, never having
        succeeded, its creation) is older than the rule's `stale_after_s`: keyed by that
        success, so a schedule stale for days pages once until it succeeds again."""
        result = await session.execute(
            text(
                "INSERT INTO notification_deliveries"
                " (rule_id, event, event_key, schedule_id, execution_id, payload)"
                " SELECT r.id, 'stale', s.id::text || ':' || coalesce(ok.id::text, 'never'),"
                "  s.id, ok.id, jsonb_build_object('event', 'stale', 'rule', r.name,"
                "  'schedule', s.name, 'execution_id', ok.id::text, 'status', 'stale',"
                "  'scheduled_for', ok.scheduled_for, 'error_message', NULL)"
                " FROM notification_rules r"
                " JOIN schedules s ON s.enabled AND s.name ~ r.schedules_regex"
                " LEFT JOIN LATERAL (SELECT e.id, e.scheduled_for, e.completed_at"
                "   FROM executions e WHERE e.schedule_id = s.id AND e.status_id = :success"
                "   ORDER BY e.created_at DESC LIMIT 1) ok ON true"
                " WHERE r.enabled AND 'stale' = ANY (r.events) AND r.stale_after_s IS NOT NULL"
                "  AND coalesce(ok.completed_at, s.created_at)"
                "      < now() - make_interval(secs => r.stale_after_s)"
                " LIMIT :limit"
                " ON CONFLICT (rule_id, event, event_key) DO NOTHING"
            ),
            {"success": ExecutionStatus.SUCCESS.id, "limit": limit},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def lock_due_deliveries(session: AsyncSession, *, limit: int) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, locked (SKIP LOCKED: each goes out from
        one process only), with their rule's target and secret."""
        result = await session.execute(
            select(
                NotificationDelivery.id,
                NotificationDelivery.event,
                NotificationDelivery.payload,
                NotificationDelivery.attempts,
                NotificationRule.webhook_url,
                NotificationRule.task,
                NotificationRule.secret,
            )
            .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
            .where(
                NotificationDelivery.status == "pending",
                NotificationDelivery.next_attempt_at <= func.now(),
            )
            .order_by(NotificationDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(of=NotificationDelivery, skip_locked=True)
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def mark_delivery(
        session: AsyncSession,
        delivery_id: uuid.UUID,
        *,
        sent: bool,
        error: str | None,
        retry_in_s: float,
    ) -> None:
        values: dict[str, Any] = {
            "attempts": NotificationDelivery.attempts + 1,
            "last_error": error,
        }
        if sent:
            values.update(status="sent", sent_at=func.now())
        else:
            values["next_attempt_at"] = func.now() + func.make_interval(
                0, 0, 0, 0, 0, 0, retry_in_s
            )
        await session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    async def deliveries(
        session: AsyncSession, *, rule: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        stmt = (
            select(
                NotificationDelivery.id,
                NotificationRule.name.label("rule"),
                NotificationDelivery.event,
                NotificationDelivery.event_key,
                NotificationDelivery.execution_id,
                NotificationDelivery.status,
                NotificationDelivery.attempts,
                NotificationDelivery.last_error,
                NotificationDelivery.created_at,
                NotificationDelivery.sent_at,
            )
            .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
            .order_by(NotificationDelivery.created_at.desc())
            .limit(limit)
        )
        if rule is not None:
            stmt = stmt.where(NotificationRule.name == rule)
        return [dict(row) for row in (await session.execute(stmt)).mappings()]


# --- Least privilege ----------------------------------------------------------------------

_READ = "SELECT"
_WRITE = "SELECT, INSERT, UPDATE"
_ALL = "SELECT, INSERT, UPDATE, DELETE"
ROLE_GRANTS: dict[str, dict[str, str]] = {
    "readonly": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": _READ,
        "executions": _READ,
        "audit_log": _READ,
    },
    "worker": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": "SELECT, UPDATE",
        "executions": _WRITE,
        "notification_rules": _READ,
        "notification_deliveries": "SELECT, INSERT",
    },
    "beat": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": _ALL,
        "executions": _ALL,
        "notification_rules": _READ,
        "notification_deliveries": _WRITE,
    },
    "operator": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": _ALL,
        "executions": _ALL,
        "audit_log": "SELECT, INSERT",
        "notification_rules": _ALL,
        "notification_deliveries": _WRITE,
        "web_users": _ALL,
        "web_tokens": _ALL,
    },
}
"""What each process needs: a worker records runs (and, through them, pauses a failing
schedule, releases a buffered run and queues alert deliveries); a beat plans runs, syncs
`beat_schedule` rows and sends alerts; an operator also edits schedules (CLI, apply, prune,
import, the dashboard with its users and tokens) and writes the audit trail; readonly reads
history, stats, lists and the audit trail (never password hashes or webhook secrets)."""


def role_statements(prefix: str = "scheduler_") -> list[str]:
    """SQL creating the four group roles (NOLOGIN; grant them to login users) and their
    privileges. Re-running it is harmless."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
        raise ValueError("a role prefix is lower-case letters, digits and _")
    statements: list[str] = []
    for role, grants in ROLE_GRANTS.items():
        name = f"{prefix}{role}"
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
            f"THEN CREATE ROLE {name} NOLOGIN; END IF; END $$"
        )
        statements.append(f"GRANT USAGE ON SCHEMA public TO {name}")
        statements.extend(f"GRANT {p} ON {table} TO {name}" for table, p in grants.items())
        if any("INSERT" in privileges for privileges in grants.values()):
            statements.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}")
    return statements


async def apply_statements(session: AsyncSession, statements: Sequence[str]) -> None:
    for statement in statements:
        await session.execute(text(statement))
