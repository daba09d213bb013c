"""Every SQL statement of the project lives here.

Functions are async, take the caller's `AsyncSession` and never commit: the caller owns the
transaction (one unit of work, retried whole). `SchedulerRepository` keeps the seed's API:
`await SchedulerRepository().get_execution_status_by_code(session, "success")` and
`await SchedulerRepository().update_execution(session, execution_id, {...})` work unchanged,
called on the class or on an instance.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from scheduler.domain import ExecutionStatus, OverlapPolicy
from scheduler.exceptions import DuplicateError, NotFoundError
from scheduler.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    ExecutionStatusRow,
    Schedule,
)

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


@dataclass(frozen=True)
class DueOutlook:
    uncomputed: bool
    """An enabled row has no `next_run_at` yet (new, or its timing just changed)."""
    earliest: datetime | None
    allow_within: datetime | None
    """The earliest `next_run_at` of an `allow` row, among rows due by the horizon."""
    guarded_within: datetime | None
    """The same for rows with an overlap guard (planned only when due)."""


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
        transaction's start). Every process takes its time from here (see `scheduler.clock`)."""
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
        a slot already taken (by another beat) is skipped. Returns the inserted ids."""
        if not rows:
            return set()
        result = await session.execute(
            text(
                "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, "
                "scheduled_for, status_id, created_at, completed_at) "
                "SELECT id, schedule_id, task, args::jsonb, kwargs::jsonb, trigger, scheduled_for, "
                "status_id, created_at, completed_at FROM unnest("
                "CAST(:ids AS uuid[]), CAST(:schedule_ids AS bigint[]), CAST(:tasks AS text[]), "
                "CAST(:args AS text[]), CAST(:kwargs AS text[]), CAST(:triggers AS text[]), "
                "CAST(:scheduled_for AS timestamptz[]), CAST(:status_ids AS smallint[]), "
                "CAST(:created_at AS timestamptz[]), CAST(:completed_at AS timestamptz[])) "
                "AS r(id, schedule_id, task, args, kwargs, trigger, scheduled_for, status_id, "
                "created_at, completed_at) "
                "ON CONFLICT (schedule_id, scheduled_for) DO NOTHING RETURNING id"
            ),
            {
                "ids": [r["id"] for r in rows],
                "schedule_ids": [r["schedule_id"] for r in rows],
                "tasks": [r["task"] for r in rows],
                "args": [json.dumps(r["args"]) for r in rows],
                "kwargs": [json.dumps(r["kwargs"]) for r in rows],
                "triggers": [r["trigger"] for r in rows],
                "scheduled_for": [r["scheduled_for"] for r in rows],
                "status_ids": [r["status_id"] for r in rows],
                "created_at": [r["created_at"] for r in rows],
                "completed_at": [r["completed_at"] for r in rows],
            },
        )
        return {_as_uuid(v) for v in result.scalars().all()}

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
        """Rows still `pending` (publish failed, or a beat died after commit), locked.
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
        result = await session.execute(
            select(*_MESSAGE_COLUMNS, and_(written_ahead, disabled).label("withdraw"))
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(
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
    async def clear_beat_errors(session: AsyncSession) -> int:
        """Let the beat look again at rows it flagged (a task may be registered now)."""
        result = await session.execute(
            update(Schedule)
            .where(Schedule.last_error.is_not(None), Schedule.enabled)
            .values(last_error=None, next_run_at=None)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

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
        " started_at, worker, attempt)"
        f" VALUES ($1, $2, $3, $4, 'direct', {ExecutionStatus.RUNNING.id}, $5, $5, $6, 1)"
        f" ON CONFLICT (id) DO UPDATE SET status_id = {ExecutionStatus.RUNNING.id},"
        " started_at = EXCLUDED.started_at, worker = EXCLUDED.worker,"
        " attempt = e.attempt + 1, completed_at = NULL"
        " WHERE e.status_id = ANY($7::smallint[])"
        " RETURNING e.attempt"
    )
    _FINISH_SQL = (
        "UPDATE executions SET status_id = $2, duration_ms = $3, completed_at = $4,"
        " result_summary = $5, error_type = $6, error_message = $7, traceback = $8,"
        " progress = COALESCE($9::jsonb, progress)"
        f" WHERE id = $1 AND status_id = {ExecutionStatus.RUNNING.id}"
    )
    _PROGRESS_SQL = (
        "UPDATE executions SET progress = $2::jsonb"
        f" WHERE id = $1 AND status_id = {ExecutionStatus.RUNNING.id}"
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
    ) -> int | None:
        """Start a run in one statement: claim its row (pending|queued|retrying -> running,
        started_at, worker, attempt + 1), or create it with trigger `direct` for a call made
        outside the beat. Returns the attempt number, or None when the execution is already
        running or finished (a duplicate delivery: run nothing). `reclaim_running` lets a
        redelivered acks_late message take over a run whose worker died.

        `driver` is an asyncpg connection (see `driver_connection`); args/kwargs are JSON text.
        """
        claimable = SchedulerRepository._CLAIMABLE
        if reclaim_running:
            claimable = [*claimable, ExecutionStatus.RUNNING.id]
        attempt = await driver.fetchval(
            SchedulerRepository._CLAIM_SQL,
            _as_uuid(execution_id),
            task,
            args_json,
            kwargs_json,
            now,
            worker,
            claimable,
        )
        return None if attempt is None else int(attempt)

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
        if not execution_ids:
            return 0
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
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # --- Schedules (definitions) --------------------------------------------------------

    @staticmethod
    async def list_schedules(
        session: AsyncSession, *, names: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every schedule (or the named ones) with the status code of its latest run."""
        last = (
            select(ExecutionStatusRow.code)
            .join(Execution, Execution.status_id == ExecutionStatusRow.id)
            .where(Execution.schedule_id == Schedule.id)
            .order_by(Execution.created_at.desc())
            .limit(1)
            .correlate(Schedule)
            .scalar_subquery()
        )
        stmt = select(Schedule, last.label("last_status")).order_by(Schedule.name)
        if names is not None:
            stmt = stmt.where(Schedule.name.in_(names))
        result = await session.execute(stmt)
        return [
            {
                **{c.name: getattr(row, c.name) for c in Schedule.__table__.columns},
                "last_status": status,
            }
            for row, status in result.all()
        ]

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
    ) -> list[dict[str, Any]]:
        """Runs newest first. Filtering by schedule resolves its id first so the
        (schedule_id, created_at) index serves the query."""
        stmt = select(*_HISTORY_COLUMNS).outerjoin(Schedule, Schedule.id == Execution.schedule_id)
        if schedule is not None:
            schedule_id = (
                await session.execute(select(Schedule.id).where(Schedule.name == schedule))
            ).scalar()
            if schedule_id is None:
                raise NotFoundError(
                    f"no schedule named {schedule!r}: see `scheduler schedules list`"
                )
            stmt = stmt.where(Execution.schedule_id == schedule_id)
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
)


def _with_status(row: dict[str, Any]) -> dict[str, Any]:
    row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
    return row


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
