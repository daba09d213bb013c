"""The Python API: the CLI's queries and schedule changes for programs.

Every function has an async form (`a...`, optionally on the caller's `AsyncSession`, which
the caller then commits) and a sync form that runs on the process's event loop and engine::

    from scheduler import api
    api.upsert_schedule(api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *"))
    for run in api.history(schedule="nightly", limit=10): print(run["status"], run["duration_ms"])
"""

from __future__ import annotations

import contextlib
import enum
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import get_settings
from scheduler import clock
from scheduler.db import get_runtime
from scheduler.dispatcher import Dispatcher, TriggerResult
from scheduler.exceptions import InvalidScheduleError, NotFoundError
from scheduler.repository import SchedulerRepository as repo
from scheduler.schedules import (
    ScheduleDefinition,
    from_row,
    normalize,
    registered_tasks,
    validate,
)

T = TypeVar("T")
__all__ = [
    "ScheduleDefinition",
    "TriggerResult",
    "UpsertOutcome",
    "areconcile",
    "get_execution",
    "history",
    "list_schedules",
    "remove_schedule",
    "stats",
    "trigger",
    "upsert_schedule",
]


class UpsertOutcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@contextlib.asynccontextmanager
async def _unit(session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
    """The caller's session as it is, or a new one committed on success."""
    if session is not None:
        yield session
        return
    async with get_runtime().sessions() as own, own.begin():
        yield own


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    return get_runtime().run(coro)


async def areconcile(
    definitions: list[ScheduleDefinition],
    *,
    update_existing: bool = True,
    prune: bool = False,
    dry_run: bool = False,
    session: AsyncSession | None = None,
) -> dict[str, list[str]]:
    """Make the stored schedules match `definitions` in one transaction (the caller validates).

    Returns the names under `create`, `update`, `unchanged`, `existing` (differs, but
    `update_existing` is off) and `delete` (only with `prune`). `dry_run` writes nothing."""
    changes: dict[str, list[str]] = {
        "create": [], "update": [], "unchanged": [], "existing": [], "delete": []
    }  # fmt: skip
    async with _unit(session) as s:
        stored = {r["name"]: r for r in await repo.list_schedules(s)}
        wanted = {d.name: d for d in definitions}
        for name, definition in wanted.items():
            current = stored.get(name)
            if current is None:
                changes["create"].append(name)
                if not dry_run:
                    await repo.insert_schedule(s, definition.column_values())
            elif normalize(from_row(current)) == normalize(definition):
                changes["unchanged"].append(name)
            elif not update_existing:
                changes["existing"].append(name)
            else:
                changes["update"].append(name)
                if not dry_run:
                    values = definition.column_values()
                    values.pop("name")
                    await repo.update_schedule(s, name, values)
        if prune:
            for name in sorted(set(stored) - set(wanted)):
                if stored[name].get("origin", "user") != "user":
                    continue  # the app's beat_schedule owns it (synced at beat start)
                changes["delete"].append(name)
                if not dry_run:
                    await repo.delete_schedule(s, name)
    return changes


async def aupsert_schedule(
    definition: ScheduleDefinition,
    *,
    session: AsyncSession | None = None,
    check_task: bool = True,
) -> UpsertOutcome:
    """Create the schedule, or update it to match `definition`; validated first."""
    validate(definition, registered_tasks() if check_task else None)
    changes = await areconcile([definition], session=session)
    if changes["create"]:
        return UpsertOutcome.CREATED
    return UpsertOutcome.UPDATED if changes["update"] else UpsertOutcome.UNCHANGED


async def alist_schedules(*, session: AsyncSession | None = None) -> list[dict[str, Any]]:
    async with _unit(session) as s:
        return await repo.list_schedules(s)


async def aremove_schedule(name: str, *, session: AsyncSession | None = None) -> None:
    async with _unit(session) as s:
        if not await repo.delete_schedule(s, name):
            raise NotFoundError(f"no schedule named {name!r}: see `scheduler schedules list`")


async def ahistory(
    *,
    schedule: str | None = None,
    task: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    if limit < 1:
        raise InvalidScheduleError("limit must be at least 1")
    async with _unit(session) as s:
        return await repo.history(
            s, schedule=schedule, task=task, status=status, since=since, until=until, limit=limit
        )


async def aget_execution(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> dict[str, Any]:
    try:
        key = execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotFoundError(f"{execution_id!r} is not an execution id (a UUID)") from None
    async with _unit(session) as s:
        found = await repo.execution_details(s, key)
    if found is None:
        raise NotFoundError(f"no execution {key}: see `scheduler history`")
    return found


async def astats(
    *,
    since: datetime | None = None,
    schedule: str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    since = since or datetime.now(UTC) - timedelta(hours=24)
    async with _unit(session) as s:
        return await repo.stats(s, since=since, schedule=schedule)


async def atrigger(name: str, *, force: bool = False) -> TriggerResult:
    """Run schedule `name` now (trigger `manual`); respects its overlap policy unless `force`."""
    from config.celery import app
    from scheduler.publisher import Publisher

    publisher = Publisher(app)
    try:
        dispatcher = Dispatcher(
            sessions=get_runtime().sessions,
            publisher=publisher,
            registered=None,
            settings=get_settings(),
        )
        await clock.CLOCK.refresh(get_runtime().autocommit, get_settings().clock_resync_s)
        return await dispatcher.trigger(name, force=force, now=clock.now())
    finally:
        publisher.close()


def upsert_schedule(definition: ScheduleDefinition, *, check_task: bool = True) -> UpsertOutcome:
    return _sync(aupsert_schedule(definition, check_task=check_task))


def list_schedules() -> list[dict[str, Any]]:
    return _sync(alist_schedules())


def remove_schedule(name: str) -> None:
    _sync(aremove_schedule(name))


def history(**filters: Any) -> list[dict[str, Any]]:
    return _sync(ahistory(**filters))


def get_execution(execution_id: uuid.UUID | str) -> dict[str, Any]:
    return _sync(aget_execution(execution_id))


def stats(*, since: datetime | None = None, schedule: str | None = None) -> list[dict[str, Any]]:
    return _sync(astats(since=since, schedule=schedule))


def trigger(name: str, *, force: bool = False) -> TriggerResult:
    return _sync(atrigger(name, force=force))
