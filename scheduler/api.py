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
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import get_settings
from scheduler.cron_describe import Description, describe_definition
from scheduler.cron_describe import describe as describe_timing
from scheduler.db import get_runtime
from scheduler.dispatcher import BackfillReport, Dispatcher, TriggerResult
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
    "BackfillReport",
    "ScheduleDefinition",
    "TriggerResult",
    "UpsertOutcome",
    "areconcile",
    "backfill",
    "get_execution",
    "history",
    "list_schedules",
    "pause_schedule",
    "remove_schedule",
    "resume_schedule",
    "run_tree",
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
    root: uuid.UUID | str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first; `root` keeps one run tree (see `run_tree`)."""
    if limit < 1:
        raise InvalidScheduleError("limit must be at least 1")
    key = None if root is None else _execution_key(root)
    async with _unit(session) as s:
        return await repo.history(
            s,
            schedule=schedule,
            task=task,
            status=status,
            since=since,
            until=until,
            limit=limit,
            root=key,
        )


def _execution_key(execution_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotFoundError(f"{execution_id!r} is not an execution id (a UUID)") from None


async def aget_execution(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> dict[str, Any]:
    try:
        key = execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotFoundError(f"{execution_id!r} is not an execution id (a UUID)") from None
    async with _unit(session) as s:
        found = await repo.execution_details(s, key)
        tree = [] if found is None else await repo.run_tree(s, key)
    if found is None:
        raise NotFoundError(f"no execution {key}: see `scheduler history`")
    found["children"] = [node for node in tree if node["parent_id"] == key]
    found["tree"] = tree
    return found


async def arun_tree(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Every run of the tree `execution_id` belongs to: its root (the run that started the
    tree, e.g. a scheduled run) and every run whose Celery root_id is that root (chain,
    group and chord steps, subtasks), oldest first; each has `parent_id` and `root_id`."""
    key = _execution_key(execution_id)
    async with _unit(session) as s:
        tree = await repo.run_tree(s, key)
    if not tree:
        raise NotFoundError(f"no execution {key}: see `scheduler history`")
    return tree


async def apause_schedule(
    name: str, reason: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Pause schedule `name` (disable it) noting `reason`, `actor` (who) and the time; its
    runs written ahead are withdrawn. Returns the schedule as `list_schedules` gives it."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidScheduleError("a pause needs a reason (--reason TEXT)")
    async with _unit(session) as s:
        if not await repo.pause_schedule(s, name, reason=reason, actor=actor):
            raise NotFoundError(f"no schedule named {name!r}: see `scheduler schedules list`")
        return (await repo.list_schedules(s, names=[name]))[0]


async def aresume_schedule(
    name: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Enable schedule `name` again (from its next slot, no catch-up for the paused time);
    the pause annotation is cleared. `actor` is accepted for the caller's own records."""
    async with _unit(session) as s:
        if not await repo.resume_schedule(s, name):
            raise NotFoundError(f"no schedule named {name!r}: see `scheduler schedules list`")
        return (await repo.list_schedules(s, names=[name]))[0]


async def astats(
    *,
    since: datetime | None = None,
    schedule: str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    since = since or datetime.now(UTC) - timedelta(hours=24)
    async with _unit(session) as s:
        return await repo.stats(s, since=since, schedule=schedule)


async def atrigger(
    name: str,
    *,
    force: bool = False,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> TriggerResult:
    """Run schedule `name` now (trigger `manual`); respects its overlap policy unless `force`.
    `args`/`kwargs` replace the schedule's for this one run (recorded on the run)."""
    if args is not None and not isinstance(args, list):
        raise InvalidScheduleError("args must be a JSON array, e.g. '[1, \"a\"]'")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InvalidScheduleError("kwargs must be a JSON object, e.g. '{\"key\": 1}'")
    async with _dispatcher() as dispatcher:
        return await dispatcher.trigger(
            name, force=force, now=datetime.now(UTC), args=args, kwargs=kwargs
        )


async def abackfill(
    name: str,
    start: datetime,
    end: datetime,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Give each slot of schedule `name` from `start` to `end` (both included, not after
    now) that has no run yet a run with trigger `backfill`; see `Dispatcher.backfill`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidScheduleError("backfill bounds need a time zone (aware datetimes)")
    async with _dispatcher() as dispatcher:
        return await dispatcher.backfill(
            name,
            start.astimezone(UTC),
            end.astimezone(UTC),
            force=force,
            dry_run=dry_run,
            now=datetime.now(UTC),
            progress=progress,
        )


@contextlib.asynccontextmanager
async def _dispatcher() -> AsyncIterator[Dispatcher]:
    from config.celery import app
    from scheduler.publisher import Publisher

    publisher = Publisher(app)
    try:
        yield Dispatcher(
            sessions=get_runtime().sessions,
            publisher=publisher,
            registered=None,
            settings=get_settings(),
        )
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


def describe(
    schedule: ScheduleDefinition | str,
    *,
    timezone: str = "UTC",
    name: str | None = None,
    day_match: str = "any",
    now: datetime | None = None,
) -> Description:
    """What a schedule does in words, plus a note for each DST change in the year after
    `now` that skips or repeats one of its slots. `schedule` is a definition or a cron
    expression (then `timezone`, `name` for `H` and `day_match` apply). Pure: no database."""
    if isinstance(schedule, ScheduleDefinition):
        return describe_definition(schedule, now)
    return describe_timing(
        cron=schedule, timezone=timezone, name=name, day_match=day_match, now=now
    )


__all__ += ["Description", "describe"]


def trigger(
    name: str,
    *,
    force: bool = False,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> TriggerResult:
    return _sync(atrigger(name, force=force, args=args, kwargs=kwargs))


def backfill(
    name: str,
    start: datetime,
    end: datetime,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    return _sync(abackfill(name, start, end, force=force, dry_run=dry_run, progress=progress))


def pause_schedule(name: str, reason: str, *, actor: str | None = None) -> dict[str, Any]:
    return _sync(apause_schedule(name, reason, actor=actor))


def resume_schedule(name: str, *, actor: str | None = None) -> dict[str, Any]:
    return _sync(aresume_schedule(name, actor=actor))


def run_tree(execution_id: uuid.UUID | str) -> list[dict[str, Any]]:
    return _sync(arun_tree(execution_id))
