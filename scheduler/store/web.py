"""The SQL of the dashboard and its accounts: audit trail, web users and tokens, and the
read-side queries the pages need (paged schedules, keyset-paged runs, aggregates).

Like `scheduler.store.repository`, every function takes the caller's `AsyncSession` and never
commits. Paging is by key, never by offset, so page 1,000 costs what page 1 costs.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    and_,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from scheduler.core.domain import ExecutionStatus
from scheduler.store.models import (
    NON_TERMINAL_STATUS_IDS,
    AuditEntry,
    Execution,
    Schedule,
    WebToken,
    WebUser,
)

FAILURE_STATUS_IDS = (
    ExecutionStatus.FAILED.id,
    ExecutionStatus.TIMEOUT.id,
    ExecutionStatus.LOST.id,
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


_RUN_COLUMNS = (
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


class WebStore:
    """Stateless: every method is a static method."""

    # --- Audit --------------------------------------------------------------------------

    @staticmethod
    async def add_audit(
        session: AsyncSession,
        *,
        actor: str,
        action: str,
        target_type: str,
        target: str | None,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        await session.execute(
            insert(AuditEntry).values(
                actor=actor,
                action=action,
                target_type=target_type,
                target=target,
                reason=reason,
                detail=json.loads(json.dumps(dict(detail or {}), default=str)),
            )
        )

    @staticmethod
    async def add_audits(
        session: AsyncSession, entries: Sequence[Mapping[str, Any]], *, chunk: int = 1000
    ) -> None:
        """Many audit entries (each with `add_audit`'s keywords) in multi-row statements."""
        rows = [
            {
                "actor": e["actor"],
                "action": e["action"],
                "target_type": e["target_type"],
                "target": e.get("target"),
                "reason": e.get("reason"),
                "detail": json.loads(json.dumps(dict(e.get("detail") or {}), default=str)),
            }
            for e in entries
        ]
        for start in range(0, len(rows), chunk):
            # the Core table and a list of parameter sets: compiled once, sent as multi-row
            # INSERTs (a 1,000-row `.values(rows)` costs about half a second to compile)
            await session.execute(
                insert(AuditEntry.metadata.tables[AuditEntry.__tablename__]),
                rows[start : start + chunk],
            )

    @staticmethod
    async def audit_entries(
        session: AsyncSession,
        *,
        since: datetime | None = None,
        before_id: int | None = None,
        target_type: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first; `before_id` pages back."""
        stmt = select(AuditEntry.__table__).order_by(AuditEntry.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
        if before_id is not None:
            stmt = stmt.where(AuditEntry.id < before_id)
        if target_type is not None:
            stmt = stmt.where(AuditEntry.target_type == target_type)
        if target is not None:
            stmt = stmt.where(AuditEntry.target == target)
        result = await session.execute(stmt)
        return [dict(r) for r in result.mappings()]

    # --- Users and tokens ---------------------------------------------------------------

    @staticmethod
    async def add_user(session: AsyncSession, name: str, role: str, password_hash: str) -> bool:
        """False when the name is taken."""
        result = await session.execute(
            text(
                "INSERT INTO web_users (name, role, password_hash) VALUES (:n, :r, :h) "
                "ON CONFLICT (name) DO NOTHING RETURNING name"
            ),
            {"n": name, "r": role, "h": password_hash},
        )
        return result.scalar() is not None

    @staticmethod
    async def users(session: AsyncSession) -> list[dict[str, Any]]:
        result = await session.execute(
            select(WebUser.name, WebUser.role, WebUser.created_at).order_by(WebUser.name)
        )
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def user(session: AsyncSession, name: str) -> dict[str, Any] | None:
        result = await session.execute(select(WebUser.__table__).where(WebUser.name == name))
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def remove_user(session: AsyncSession, name: str) -> bool:
        result = await session.execute(delete(WebUser).where(WebUser.name == name))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def has_accounts(session: AsyncSession) -> bool:
        """Any user or token: once one exists, every request needs credentials."""
        users = select(literal_column("1")).select_from(WebUser).limit(1).exists()
        tokens = select(literal_column("1")).select_from(WebToken).limit(1).exists()
        result = await session.execute(select(or_(users, tokens)))
        return bool(result.scalar())

    @staticmethod
    async def add_token(session: AsyncSession, name: str, role: str, token_hash: str) -> int:
        result = await session.execute(
            insert(WebToken)
            .values(name=name, role=role, token_hash=token_hash)
            .returning(WebToken.id)
        )
        return int(result.scalar_one())

    @staticmethod
    async def use_token(session: AsyncSession, token_hash: str) -> dict[str, Any] | None:
        """The token with this hash (its `last_used_at` set to now), or None."""
        result = await session.execute(
            update(WebToken)
            .where(WebToken.token_hash == token_hash)
            .values(last_used_at=func.now())
            .returning(WebToken.id, WebToken.name, WebToken.role)
        )
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def tokens(session: AsyncSession) -> list[dict[str, Any]]:
        result = await session.execute(
            select(
                WebToken.id, WebToken.name, WebToken.role, WebToken.created_at,
                WebToken.last_used_at,
            ).order_by(WebToken.id)
        )  # fmt: skip
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def remove_token(session: AsyncSession, token_id: int) -> bool:
        result = await session.execute(delete(WebToken).where(WebToken.id == token_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- Schedules page -----------------------------------------------------------------

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

    # --- Runs page ----------------------------------------------------------------------

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
        stmt = WebStore._filtered(
            select(*_RUN_COLUMNS).outerjoin(Schedule, Schedule.id == Execution.schedule_id),
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
            capped = WebStore._filtered(
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
                WebStore._filtered(select(unserved.label("match")).select_from(Execution), served)
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
        plain = WebStore._filtered(select(Execution.id), where)
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

    # --- Aggregates ---------------------------------------------------------------------

    @staticmethod
    async def runs_per_hour(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
        hour = func.date_trunc("hour", Execution.created_at).label("hour")
        result = await session.execute(
            select(hour, Execution.status_id, func.count().label("runs"))
            .where(Execution.created_at >= since)
            .group_by(hour, Execution.status_id)
            .order_by(hour)
        )
        rows = [dict(r) for r in result.mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def failing_schedules(
        session: AsyncSession, *, since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Schedules whose newest finished run since `since` failed, timed out or was lost,
        newest failure first. Starts from the failures (a fraction of the runs), newest per
        schedule, and drops those with a later good run (an index probe each, stopping at
        `limit`)."""
        failures = (
            select(
                Execution.schedule_id,
                Execution.status_id,
                Execution.created_at,
                Execution.error_message,
            )
            .where(
                Execution.created_at >= since,
                Execution.schedule_id.is_not(None),
                Execution.status_id.in_(FAILURE_STATUS_IDS),
            )
            .ext(distinct_on(Execution.schedule_id))
            .order_by(Execution.schedule_id, Execution.created_at.desc())
            .subquery()
        )
        newest_first = (
            select(failures).order_by(failures.c.created_at.desc()).limit(100_000).subquery()
        )
        later = aliased(Execution)
        recovered = (
            select(literal_column("1"))
            .where(
                later.schedule_id == newest_first.c.schedule_id,
                later.created_at > newest_first.c.created_at,
                later.status_id.notin_((*NON_TERMINAL_STATUS_IDS, *FAILURE_STATUS_IDS)),
            )
            .exists()
        )
        result = await session.execute(
            select(
                Schedule.name,
                Schedule.task,
                newest_first.c.status_id,
                newest_first.c.created_at,
                newest_first.c.error_message,
            )
            .select_from(newest_first)
            .join(Schedule, Schedule.id == newest_first.c.schedule_id)
            .where(~recovered)
            .order_by(newest_first.c.created_at.desc())
            .limit(limit)
        )
        rows = [dict(r) for r in result.mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def stuck_runs(
        session: AsyncSession, *, older_than: datetime, lost_since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Active runs created before `older_than`, and runs lost since `lost_since`."""
        stmt = (
            select(*_RUN_COLUMNS)
            .outerjoin(Schedule, Schedule.id == Execution.schedule_id)
            .where(
                or_(
                    and_(
                        Execution.status_id.in_(NON_TERMINAL_STATUS_IDS),
                        Execution.created_at < older_than,
                    ),
                    and_(
                        Execution.status_id == ExecutionStatus.LOST.id,
                        Execution.created_at >= lost_since,
                    ),
                )
            )
            .order_by(Execution.created_at.desc())
            .limit(limit)
        )
        rows = [dict(r) for r in (await session.execute(stmt)).mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def activity(session: AsyncSession, *, since: datetime) -> dict[str, Any]:
        """Workers that started runs since `since` (with their last start), the last beat
        dispatch, and the outbox depth (runs written but not yet on the broker)."""
        workers = await session.execute(
            select(Execution.worker, func.max(Execution.started_at).label("last_seen"))
            .where(
                # created_at bounds the scan to the index; a run queued over an hour is rare
                Execution.created_at >= since - timedelta(hours=1),
                Execution.started_at >= since,
                Execution.worker.is_not(None),
            )
            .group_by(Execution.worker)
            .order_by(Execution.worker)
        )
        beat = await session.execute(
            select(func.max(Execution.created_at)).where(
                Execution.created_at >= since,
                Execution.trigger.in_(("schedule", "catchup")),
            )
        )
        outbox = await session.execute(
            select(func.count()).where(Execution.status_id == ExecutionStatus.PENDING.id)
        )
        return {
            "workers": [dict(r) for r in workers.mappings()],
            "last_beat_dispatch": beat.scalar(),
            "outbox_pending": int(outbox.scalar_one()),
        }

    @staticmethod
    async def task_stats(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
        done = Execution.status_id.notin_(NON_TERMINAL_STATUS_IDS)
        result = await session.execute(
            select(
                Execution.task,
                func.count().label("runs"),
                func.count()
                .filter(Execution.status_id == ExecutionStatus.SUCCESS.id)
                .label("success"),
                func.count().filter(Execution.status_id.in_(FAILURE_STATUS_IDS)).label("failed"),
                func.count().filter(done).label("finished"),
                func.percentile_cont(0.5).within_group(Execution.duration_ms).label("p50_ms"),
                func.percentile_cont(0.95).within_group(Execution.duration_ms).label("p95_ms"),
                func.max(Execution.duration_ms).label("max_ms"),
            )
            .where(Execution.created_at >= since)
            .group_by(Execution.task)
            .order_by(Execution.task)
        )
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def failure_groups(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
        result = await session.execute(
            select(
                Execution.task,
                func.coalesce(Execution.error_type, "").label("error_type"),
                Execution.status_id,
                func.count().label("runs"),
                func.max(Execution.created_at).label("last_at"),
                func.max(Execution.error_message).label("sample_message"),
            )
            .where(
                Execution.created_at >= since,
                Execution.status_id.in_(FAILURE_STATUS_IDS),
            )
            .group_by(Execution.task, text("2"), Execution.status_id)
            .order_by(func.count().desc(), Execution.task)
            .limit(200)
        )
        rows = [dict(r) for r in result.mappings()]
        for row in rows:
            row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
        return rows

    @staticmethod
    async def schedule_counts(session: AsyncSession) -> dict[str, int]:
        result = await session.execute(
            select(
                func.count().label("total"),
                func.count().filter(Schedule.enabled.is_(True)).label("enabled"),
                func.count().filter(Schedule.last_error.is_not(None)).label("error"),
            )
        )
        return {k: int(v) for k, v in result.mappings().one().items()}

    @staticmethod
    async def distinct_values(session: AsyncSession) -> dict[str, list[str]]:
        """Choices for the runs page's filters: registered-looking task names and workers
        seen in the newest runs (bounded: never a scan of the whole table)."""
        recent = (
            select(Execution.task, Execution.worker)
            .order_by(Execution.created_at.desc())
            .limit(5000)
            .subquery()
        )
        tasks = await session.execute(select(recent.c.task).distinct().order_by(recent.c.task))
        workers = await session.execute(
            select(recent.c.worker)
            .where(recent.c.worker.is_not(None))
            .distinct()
            .order_by(recent.c.worker)
        )
        return {
            "tasks": [str(t) for t in tasks.scalars()],
            "workers": [str(w) for w in workers.scalars()],
        }
