"""What ran: history, one run's details, run trees, per-schedule stats, and the
dashboard's keyset-paged run list with its cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.api.units import blocking, unit, within
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import (
    ExecutionNotFound,
    InvalidScheduleError,
    NotAnExecutionId,
    ScheduleNotFound,
)
from scheduler.store.history import HistoryStore
from scheduler.store.pages import PageStore, RunFilter


def execution_key(execution_id: uuid.UUID | str) -> uuid.UUID:
    """`execution_id` as a UUID; NotAnExecutionId when it is not one."""
    try:
        return execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotAnExecutionId(execution_id) from None


async def ahistory(
    *,
    schedule: str | None = None,
    task: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    root: uuid.UUID | str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first; `root` keeps one run tree (see `run_tree`)."""
    if limit < 1:
        raise InvalidScheduleError("limit must be at least 1")
    key = None if root is None else execution_key(root)
    return await within(
        session, HistoryStore.history, schedule=schedule, task=task, status=status, since=since,
        until=until, limit=limit, root=key,
    )  # fmt: skip


async def aget_execution(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> dict[str, Any]:
    key = execution_key(execution_id)
    async with unit(session) as s:
        found = await HistoryStore.execution_details(s, key)
        tree = [] if found is None else await HistoryStore.run_tree(s, key)
    if found is None:
        raise ExecutionNotFound(key)
    found["children"] = [node for node in tree if node["parent_id"] == key]
    found["tree"] = tree
    return found


async def arun_tree(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Every run of the tree `execution_id` belongs to: its root (the run that started the
    tree, e.g. a scheduled run) and every run whose Celery root_id is that root (chain,
    group and chord steps, subtasks), oldest first; each has `parent_id` and `root_id`."""
    key = execution_key(execution_id)
    tree = await within(session, HistoryStore.run_tree, key)
    if not tree:
        raise ExecutionNotFound(key)
    return tree


async def astats(
    *,
    since: datetime | None = None,
    schedule: str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    since = since or datetime.now(UTC) - timedelta(hours=24)
    return await within(session, HistoryStore.stats, since=since, schedule=schedule)


async def aruns_page(
    *,
    schedule: str | None = None,
    task: str | None = None,
    status: str | None = None,
    trigger: str | None = None,
    worker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    count: bool = True,
    session: AsyncSession | None = None,
) -> dict[str, Any]:
    """Runs newest first with keyset paging: `next` is the cursor of the following page.
    `count` is exact up to 10,000 matches, the planner's estimate above (`estimated`)."""
    if not 1 <= limit <= 500:
        raise InvalidScheduleError("limit must be between 1 and 500")
    try:
        status_id = None if not status else ExecutionStatus(status).id
    except ValueError:
        codes = ", ".join(s.value for s in ExecutionStatus)
        raise InvalidScheduleError(f"unknown status {status!r}: use one of {codes}") from None
    before = decode_cursor(cursor) if cursor else None
    async with unit(session) as s:
        schedule_id = None
        if schedule:
            schedule_id = await PageStore.schedule_id(s, schedule)
            if schedule_id is None:
                raise ScheduleNotFound(schedule)
        where = RunFilter(
            schedule_id=schedule_id, task=task or None, status_id=status_id,
            trigger=trigger or None, worker=worker or None, since=since, until=until,
        )  # fmt: skip
        runs = await PageStore.runs_page(s, where, before=before, limit=limit)
        total: int | None
        if before is None and len(runs) < limit:
            total, estimated = len(runs), False  # the whole result is on this page
        else:
            total, estimated = await PageStore.count_runs(s, where) if count else (None, False)
    last = runs[-1] if len(runs) == limit else None
    return {
        "runs": runs,
        "next": encode_cursor(last["created_at"], last["id"]) if last else None,
        "count": total,
        "estimated": estimated,
    }


def encode_cursor(created_at: datetime, execution_id: uuid.UUID) -> str:
    return f"{created_at.astimezone(UTC).isoformat()}~{execution_id}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, _, key = cursor.partition("~")
        instant = datetime.fromisoformat(when)
        if instant.tzinfo is None:
            raise ValueError(cursor)
        return instant, uuid.UUID(key)
    except ValueError:
        raise InvalidScheduleError("cursor is not one this API returned") from None


async def arun(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Every column of one run, with its schedule's name."""
    key = execution_key(execution_id)
    found = await within(session, PageStore.run_row, key)
    if found is None:
        raise ExecutionNotFound(key)
    return found


history = blocking(ahistory)
get_execution = blocking(aget_execution)
run_tree = blocking(arun_tree)
stats = blocking(astats)
