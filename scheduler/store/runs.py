"""The worker's path (claim, outcome, progress) and the reaper's: one run by id.

The hot statements are plain SQL on the asyncpg connection under the process's held
connection: asyncpg keeps each prepared statement per connection, so a call is one round
trip (~0.5 ms, against ~1.5 ms of statement building and compiling through SQLAlchemy).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Integer, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.store.common import FAILURE_STATUS_IDS, Executor, as_uuid, uuid_or_none
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    Execution,
    ExecutionStatusRow,
)
from scheduler.store.run_tables import PARENT, RunTables, is_stale_table


class Attempt(int):
    """An attempt number that also tells how long the run waited (started minus queued,
    None for a run made outside the beat): read by the metrics."""

    queue_s: float | None

    def __new__(cls, value: int, *, queue_s: float | None = None) -> Attempt:
        attempt = super().__new__(cls, value)
        attempt.queue_s = queue_s
        return attempt


@cache
def _claim_sql(relation: str) -> str:
    return (
        f"INSERT INTO {relation} AS e (id, task, args, kwargs, trigger, status_id, created_at,"
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


@cache
def _finish_sql(relation: str) -> str:
    return (
        f"UPDATE {relation} AS e SET status_id = $2, duration_ms = $3, completed_at = $4,"
        " result_summary = $5, error_type = $6, error_message = $7, traceback = $8,"
        " progress = COALESCE($9::jsonb, progress)"
        # `status_id + 0`: the primary key finds the row, never ix_executions_active (a
        # generic plan may pick it when the statistics hold no running row, then scan every
        # running and dead entry: 12 ms a finish in docs/BENCHMARKS.md, "History at scale")
        f" WHERE id = $1 AND status_id + 0 = {ExecutionStatus.RUNNING.id}"
    )


@cache
def _finish_returning_sql(relation: str) -> str:
    return _finish_sql(relation) + (
        " RETURNING schedule_id, (SELECT s.overlap_policy = 'buffer_one'"
        " OR (s.pause_after_failures IS NOT NULL AND s.enabled AND $2 = ANY($10::smallint[]))"
        " FROM schedules s WHERE s.id = e.schedule_id) AS follow_up"
    )


@cache
def _successes_sql(relation: str) -> str:
    return (
        f"UPDATE {relation} AS e SET status_id = {ExecutionStatus.SUCCESS.id},"
        " duration_ms = v.duration_ms, completed_at = v.completed_at,"
        " result_summary = v.result_summary, error_type = NULL, error_message = NULL,"
        " traceback = NULL, progress = COALESCE(v.progress::jsonb, e.progress)"
        " FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[], $5::text[])"
        " AS v(id, duration_ms, completed_at, result_summary, progress)"
        # `+ 0` as in _finish_sql: each row found by the primary key
        f" WHERE e.id = v.id AND e.status_id + 0 = {ExecutionStatus.RUNNING.id}"
        " RETURNING e.schedule_id, (SELECT s.overlap_policy = 'buffer_one'"
        " FROM schedules s WHERE s.id = e.schedule_id) AS follow_up"
    )


@cache
def _progress_sql(relation: str) -> str:
    return (
        f"UPDATE {relation} SET progress = $2::jsonb"
        f" WHERE id = $1 AND status_id + 0 = {ExecutionStatus.RUNNING.id}"
    )


async def _on_run(
    driver: Any,
    tables: RunTables | None,
    method: str,
    sql: Callable[[str], str],
    execution_id: uuid.UUID,
    *params: Any,
) -> Any:
    """One run-path statement (`method` of the asyncpg connection) on the table holding the
    run (see `_relation`)."""
    relation = await _relation(driver, tables, execution_id)
    return await _on_relation(driver, tables, relation, method, sql, execution_id, *params)


async def _relation(driver: Any, tables: RunTables | None, execution_id: uuid.UUID) -> str:
    """The run's partition when `tables` knows it, else the parent. Inside a transaction the
    parent always (a dropped partition's error would abort the caller's transaction)."""
    if tables is None or driver.is_in_transaction():
        return PARENT
    return await tables.relation(driver, execution_id)


async def _on_relation(
    driver: Any,
    tables: RunTables | None,
    relation: str,
    method: str,
    sql: Callable[[str], str],
    *params: Any,
) -> Any:
    """`sql(relation)` run with `params`; again on the parent when the partition is gone."""
    call = getattr(driver, method)
    try:
        return await call(sql(relation), *params)
    except Exception as exc:
        if relation == PARENT or not is_stale_table(exc):
            raise
        if tables is not None:
            tables.forget()
        return await call(sql(PARENT), *params)


_CLAIMABLE = [
    ExecutionStatus.PENDING.id,
    ExecutionStatus.QUEUED.id,
    ExecutionStatus.RETRYING.id,
]


class RunStore:
    """One run by id: the worker's claim and outcome, the reaper's verdict. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

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

    @staticmethod
    async def update_execution(
        session: AsyncSession, execution_id: uuid.UUID | str, values: Mapping[str, Any]
    ) -> int:
        """Set `values` on one execution row; return how many rows changed (0 or 1)."""
        result = await session.execute(
            update(Execution)
            .where(Execution.id == as_uuid(execution_id))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def get_execution(
        session: AsyncSession, execution_id: uuid.UUID | str
    ) -> Execution | None:
        return await session.get(Execution, as_uuid(execution_id))

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
        tables: RunTables | None = None,
    ) -> int | None:
        """Start a run in one statement: claim its row (pending|queued|retrying -> running,
        started_at, worker, attempt + 1), or create it with trigger `direct` for a call made
        outside the beat. Returns the attempt number, or None when the execution is already
        running or finished (a duplicate delivery: run nothing). `reclaim_running` lets a
        redelivered acks_late message take over a run whose worker died. `parent_id` and
        `root_id` are Celery's (the task that sent this one, the first of its tree).

        `driver` is an asyncpg connection (see `driver_connection`); args/kwargs are JSON text.
        With `tables`, the statement names the run's partition (see `run_tables`).
        """
        claimable = _CLAIMABLE
        if reclaim_running:
            claimable = [*claimable, ExecutionStatus.RUNNING.id]
        row = await _on_run(
            driver,
            tables,
            "fetchrow",
            _claim_sql,
            as_uuid(execution_id),
            task,
            args_json,
            kwargs_json,
            now,
            worker,
            claimable,
            uuid_or_none(parent_id),
            uuid_or_none(root_id),
        )
        return None if row is None else Attempt(row[0], queue_s=row[1])

    @staticmethod
    async def execution_task(driver: Any, execution_id: uuid.UUID | str) -> str | None:
        """The task an execution row is a run of (None: no such row)."""
        value = await driver.fetchval(
            "SELECT task FROM executions WHERE id = $1", as_uuid(execution_id)
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
        tables: RunTables | None = None,
    ) -> bool:
        """Write a run's outcome in one statement; only a `running` row changes. Every
        outcome column is written (a success clears the error of an earlier attempt);
        `progress` is kept when `progress_json` is None. True when the row changed."""
        status = await _on_run(
            driver,
            tables,
            "execute",
            _finish_sql,
            as_uuid(execution_id),
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
        tables: RunTables | None = None,
    ) -> tuple[int | None, bool] | None:
        """`finish_run`, returning (schedule_id, whether the outcome has a follow-up: a
        `buffer_one` schedule may release its buffered run, a failure may pause the schedule);
        None when the row did not change."""
        row = await _on_run(
            driver,
            tables,
            "fetchrow",
            _finish_returning_sql,
            as_uuid(execution_id),
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

    @staticmethod
    async def finish_successes(
        driver: Any,
        outcomes: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        tables: RunTables | None = None,
    ) -> list[tuple[int | None, bool]]:
        """Write several `success` outcomes (`finish_run`'s values, by execution id), one
        statement per table holding them. Returns (schedule_id, whether a `buffer_one`
        follow-up is due) for each row that changed (only `running` rows change)."""
        groups: dict[str, list[tuple[uuid.UUID, Mapping[str, Any]]]] = {}
        for execution_id, outcome in outcomes:
            key = as_uuid(execution_id)
            groups.setdefault(await _relation(driver, tables, key), []).append((key, outcome))
        changed: list[tuple[int | None, bool]] = []
        for relation, rows in groups.items():
            found = await _on_relation(
                driver,
                tables,
                relation,
                "fetch",
                _successes_sql,
                [key for key, _ in rows],
                [int(outcome["duration_ms"]) for _, outcome in rows],
                [outcome["completed_at"] for _, outcome in rows],
                [outcome.get("result_summary") for _, outcome in rows],
                [outcome.get("progress_json") for _, outcome in rows],
            )
            changed.extend((row["schedule_id"], bool(row["follow_up"])) for row in found)
        return changed

    @staticmethod
    async def record_progress(
        driver: Any,
        execution_id: uuid.UUID | str,
        progress_json: str,
        *,
        tables: RunTables | None = None,
    ) -> None:
        """Store a running execution's progress (JSON text {current, total, percent})."""
        await _on_run(
            driver, tables, "execute", _progress_sql, as_uuid(execution_id), progress_json
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
            .where(Execution.id == as_uuid(execution_id), Execution.status_id.in_(allowed))
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
            await RunStore.mark_lost_returning(session, execution_ids, now=now, reason=reason)
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
