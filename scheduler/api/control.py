"""Acting on schedules and runs: run now, backfill, pause and resume, retry, revoke.
Each action is audited by the caller's `actor` (default: the OS user)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import get_settings
from scheduler.api.audit import audit
from scheduler.api.history import execution_key
from scheduler.api.units import blocking, unit
from scheduler.beat.dispatcher import Dispatcher
from scheduler.beat.trigger import BackfillReport, TriggerResult
from scheduler.core.exceptions import (
    ConflictError,
    InvalidScheduleError,
    NotFoundError,
    ScheduleNotFound,
)
from scheduler.runtime import clock
from scheduler.runtime.db import get_runtime
from scheduler.store.pages import PageStore
from scheduler.store.schedules import ScheduleStore


@contextlib.asynccontextmanager
async def _dispatcher() -> AsyncIterator[Dispatcher]:
    from config.celery import app
    from scheduler.broker.publisher import Publisher

    publisher = Publisher(app)
    try:
        await clock.CLOCK.refresh(get_runtime().autocommit, get_settings().clock_resync_s)
        yield Dispatcher(
            sessions=get_runtime().sessions,
            publisher=publisher,
            registered=None,
            settings=get_settings(),
        )
    finally:
        publisher.close()


async def atrigger(
    name: str,
    *,
    force: bool = False,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    actor: str | None = None,
) -> TriggerResult:
    """Run schedule `name` now (trigger `manual`); respects its overlap policy unless `force`.
    `args`/`kwargs` replace the schedule's for this one run (recorded on the run).
    Audited as `schedule.trigger` by `actor` (default: the OS user)."""
    if args is not None and not isinstance(args, list):
        raise InvalidScheduleError("args must be a JSON array, e.g. '[1, \"a\"]'")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InvalidScheduleError("kwargs must be a JSON object, e.g. '{\"key\": 1}'")
    async with _dispatcher() as dispatcher:
        result = await dispatcher.trigger(
            name, force=force, now=clock.now(), args=args, kwargs=kwargs
        )
    detail: dict[str, Any] = {
        "execution_id": str(result.execution_id), "status": result.status.value, "force": force,
    }  # fmt: skip
    if args is not None or kwargs is not None:
        detail |= {"args": args, "kwargs": kwargs}
    async with unit(None) as s:
        await audit(s, actor, "schedule.trigger", "schedule", name, detail=detail)
    return result


async def abackfill(
    name: str,
    start: datetime,
    end: datetime,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    actor: str | None = None,
) -> BackfillReport:
    """Give each slot of schedule `name` from `start` to `end` (both included, not after
    now) that has no run yet a run with trigger `backfill`; see `Dispatcher.backfill`.
    Audited as `schedule.backfill` by `actor` unless `dry_run`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidScheduleError("backfill bounds need a time zone (aware datetimes)")
    async with _dispatcher() as dispatcher:
        report = await dispatcher.backfill(
            name,
            start.astimezone(UTC),
            end.astimezone(UTC),
            force=force,
            dry_run=dry_run,
            now=clock.now(),
            progress=progress,
        )
    if not dry_run:
        async with unit(None) as s:
            await audit(
                s, actor, "schedule.backfill", "schedule", name,
                detail={"from": start.isoformat(), "to": end.isoformat(), "force": force,
                        "created": len(report.created), "existing": len(report.existing),
                        "skipped": len(report.skipped)},
            )  # fmt: skip
    return report


async def apause_schedule(
    name: str, reason: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Pause schedule `name` (disable it) noting `reason`, `actor` (who) and the time; its
    runs written ahead are withdrawn. Returns the schedule as `list_schedules` gives it."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidScheduleError("a pause needs a reason (--reason TEXT)")
    async with unit(session) as s:
        if not await ScheduleStore.pause_schedule(s, name, reason=reason, actor=actor):
            raise ScheduleNotFound(name)
        await audit(s, actor, "schedule.pause", "schedule", name, reason=reason)
        return (await ScheduleStore.list_schedules(s, names=[name]))[0]


async def aresume_schedule(
    name: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Enable schedule `name` again (from its next slot, no catch-up for the paused time);
    the pause annotation is cleared. Audited as `schedule.resume` by `actor`."""
    async with unit(session) as s:
        if not await ScheduleStore.resume_schedule(s, name):
            raise ScheduleNotFound(name)
        await audit(s, actor, "schedule.resume", "schedule", name)
        return (await ScheduleStore.list_schedules(s, names=[name]))[0]


async def aretry_run(execution_id: uuid.UUID | str, *, actor: str | None = None) -> TriggerResult:
    """Run again, as a new run (trigger `retry`, `parent_id` = `execution_id`, the same task,
    args, kwargs and schedule), the run `execution_id` of a schedule that ended `failed`,
    `timeout`, `lost` or `revoked`; any other raises ConflictError. Published like a manual
    trigger (the overlap policy does not judge it). Audited as `run.retry` by `actor`."""
    key = execution_key(execution_id)
    async with _dispatcher() as dispatcher:
        result = await dispatcher.retry(key, now=clock.now())
    async with unit(None) as s:
        await audit(
            s, actor, "run.retry", "run", str(key),
            detail={"new_execution_id": str(result.execution_id), "status": result.status.value},
        )  # fmt: skip
    return result


async def aretry_runs(execution_ids: list[uuid.UUID], *, actor: str | None = None) -> list[str]:
    """`aretry_run` for each of `execution_ids`, leaving out those that cannot be retried
    (unknown, not failed, timed out, lost or revoked, or of no schedule). Returns the new
    run ids."""
    made = []
    for key in execution_ids:
        try:
            result = await aretry_run(key, actor=actor)
        except (ConflictError, NotFoundError):
            continue
        made.append(str(result.execution_id))
    return made


async def arevoke_runs(execution_ids: list[uuid.UUID], *, actor: str | None = None) -> list[str]:
    """Revoke runs not yet finished: marked `revoked` and revoked on the workers (a queued
    message is then dropped). Returns the ids that were still active."""
    from config.celery import app

    async with unit(None) as s:
        revoked = await PageStore.mark_revoked(s, execution_ids)
        for key in revoked:
            await audit(s, actor, "run.revoke", "run", key)
    if revoked:
        app.control.revoke(revoked)
    return revoked


trigger = blocking(atrigger)
backfill = blocking(abackfill)
pause_schedule = blocking(apause_schedule)
resume_schedule = blocking(aresume_schedule)
retry_run = blocking(aretry_run)
