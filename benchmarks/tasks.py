"""Tasks only the benchmarks register: a bare Celery no-op, a marker, and the seed's pattern."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from config.celery import app
from scheduler.repository import SchedulerRepository


@app.task(name="bench.bare_noop")
def bare_noop(**_: Any) -> None:
    return None


@app.task(name="bench.marker")
def marker(key: str, **_: Any) -> None:
    client = redis.Redis.from_url(str(app.conf.broker_url))
    client.set(key, "done")
    client.close()


@app.task(bind=True, name="bench.seed_pattern")
def seed_pattern(self: Any, execution_id: str | None = None) -> dict[str, Any]:
    """The seed's production pattern as written: a new event loop and engine per task,
    disposed at the end, the outcome written through SchedulerRepository."""

    async def _execute() -> dict[str, Any]:
        engine = create_async_engine(os.environ["DATABASE_URL"])
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        started_at = datetime.now(UTC)
        try:
            async with sessions() as session:
                result = {"status": "success", "processed": True}
                repo = SchedulerRepository()
                completed_at = datetime.now(UTC)
                status = await repo.get_execution_status_by_code(session, "success")
                assert status is not None
                await repo.update_execution(
                    session,
                    execution_id or self.request.id,
                    {
                        "completed_at": completed_at,
                        "duration_ms": int((completed_at - started_at).total_seconds() * 1000),
                        "status_id": status.id,
                        "result_summary": str(result),
                    },
                )
                await session.commit()
                return result
        finally:
            await engine.dispose()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_execute())
    finally:
        loop.close()
