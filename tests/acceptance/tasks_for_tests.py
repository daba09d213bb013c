"""Tasks only the tests register (the worker loads them with `-I`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.celery import app
from scheduler.repository import SchedulerRepository
from scheduler.runtime.db import get_runtime
from scheduler.store.models import Schedule
from scheduler.tracking import tracked_task

log = logging.getLogger(__name__)


@tracked_task(name="tests.count_schedules", app=app)
async def count_schedules(session: AsyncSession) -> int:
    """An async body using the session from the worker's own engine."""
    result = await session.execute(select(func.count()).select_from(Schedule))
    return int(result.scalar_one())


@tracked_task(name="tests.soft_limited", app=app, soft_time_limit=0.5)
def soft_limited(seconds: float) -> None:
    import time

    time.sleep(seconds)


@tracked_task(name="tests.hard_limited", app=app, time_limit=1)
def hard_limited(seconds: float) -> None:
    import time

    time.sleep(seconds)


@shared_task(bind=True, name="tests.seed_pattern")
def seed_pattern(self: Any, execution_id: str | None = None, fail: bool = False) -> dict[str, Any]:
    """The seed's production pattern, unchanged in spirit: an async body on an AsyncSession
    that writes its own outcome through SchedulerRepository."""

    async def _execute() -> dict[str, Any]:
        started_at = datetime.now(UTC)
        async with get_runtime().session() as session:
            success = not fail
            result = {"status": "success", "processed": True} if success else None
            repo = SchedulerRepository()
            completed_at = datetime.now(UTC)
            status = await repo.get_execution_status_by_code(
                session, "success" if success else "failed"
            )
            assert status is not None
            await repo.update_execution(
                session,
                execution_id or self.request.id,
                {
                    "completed_at": completed_at,
                    "duration_ms": int((completed_at - started_at).total_seconds() * 1000),
                    "status_id": status.id,
                    "result_summary": str(result) if success else None,
                    "error_message": None if success else "seed failure",
                },
            )
            await session.commit()
            return result or {}

    return get_runtime().run(_execute())


@tracked_task(name="tests.sleep_async", app=app)
async def sleep_async(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@tracked_task(
    name="tests.acks_late_sleep", app=app, bind=True, acks_late=True, reject_on_worker_lost=True
)
def acks_late_sleep(self: Any, seconds: float) -> str:
    """Sleeps on its first delivery; a redelivered message (its worker died) returns at once."""
    if (self.request.delivery_info or {}).get("redelivered"):
        return "redelivered"
    import time

    time.sleep(seconds)
    return "first delivery"


@tracked_task(name="tests.start_chain", app=app)
def start_chain() -> str:
    """Starts a two-step chain: its steps belong to this run's tree."""
    from celery import chain

    flow = chain(
        app.signature("demo.noop", immutable=True),
        app.signature("demo.sleep", args=(0.01,), immutable=True),
    )
    return str(flow.apply_async().id)


@tracked_task(name="tests.loop_identity", app=app)
async def loop_identity(seconds: float = 0.0) -> str:
    """Which process and event loop ran this async body (one loop per process, never one per
    run), after awaiting `seconds` on it."""
    import os

    await asyncio.sleep(seconds)
    return f"{os.getpid()}:{id(asyncio.get_running_loop())}"


@tracked_task(name="tests.retry_once", app=app, bind=True, max_retries=1)
def retry_once(self: Any, countdown_s: float = 1.0) -> int:
    """Asks for one retry `countdown_s` later, then succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt fails"), countdown=countdown_s)
    return int(self.request.retries)
