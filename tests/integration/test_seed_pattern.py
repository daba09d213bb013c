"""The seed's production task pattern, kept as users write it today, works against this
project's repository unchanged: its own event loop per call, an AsyncSession from a session
factory, `get_execution_status_by_code` + `update_execution`, engine disposed per task.

(Its per-task loop and engine are what tracked tasks make unnecessary; it still has to work.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
import warnings
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import shared_task
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler.core.domain import ExecutionStatus
from scheduler.runtime.db import create_engine, get_runtime, session_factory

logger = logging.getLogger(__name__)

# What the seed imports as `from db.database import DatabaseSessionLocal, database_engine`.
database_engine: AsyncEngine
DatabaseSessionLocal: async_sessionmaker[AsyncSession]


@pytest.fixture(autouse=True)
def project_session_factory(database_url: str) -> Iterator[None]:
    global database_engine, DatabaseSessionLocal
    database_engine = create_engine(database_url)
    DatabaseSessionLocal = session_factory(database_engine)
    yield
    # The seed's helper leaves a loop set on this thread: close it like a worker exit would.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop_policy().get_event_loop()
    if not loop.is_running():
        loop.run_until_complete(database_engine.dispose())
        loop.close()
        asyncio.set_event_loop(None)


def _run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """The seed's helper: a running loop -> run in a thread, else (re)use/create one."""
    try:
        asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
            return executor.submit(asyncio.run, coro).result()
    except RuntimeError:
        try:
            loop = asyncio.get_event_loop()
            if loop.is_closed():
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)


@shared_task(
    bind=True,
    name="tests.seed.my_async_task",
    max_retries=1,
    default_retry_delay=0,
    autoretry_for=(Exception,),
    soft_time_limit=120,
    time_limit=180,
)
def my_async_task(
    self: Any, execution_id: str | None = None, param1: str | None = None, param2: int = 10
) -> dict[str, Any] | None:
    async def _execute() -> dict[str, Any] | None:
        started_at = datetime.now(UTC)
        success = False
        error_message = None
        result = None
        try:
            async with DatabaseSessionLocal() as session:
                try:
                    logger.info("Processing with param1=%s, param2=%s", param1, param2)
                    if param1 == "explode":
                        raise ValueError("param1 exploded")
                    await session.commit()
                    success = True
                    result = {"status": "success", "processed": True}
                except Exception as e:
                    error_message = str(e)
                    await session.rollback()
                    raise
                finally:
                    if execution_id:
                        await _update_execution_status(
                            session, execution_id, success, started_at, error_message, result
                        )
        finally:
            try:
                await database_engine.dispose()
            except Exception as e:
                logger.warning("Failed to dispose engine: %s", e)
        return result

    return _run_async(_execute())  # type: ignore[no-any-return]


async def _update_execution_status(
    session: AsyncSession,
    execution_id: str,
    success: bool,
    started_at: datetime,
    error_message: str | None,
    result: dict[str, Any] | None,
) -> None:
    from scheduler.repository import SchedulerRepository

    repo = SchedulerRepository()
    completed_at = datetime.now(UTC)
    duration_ms = int((completed_at - started_at).total_seconds() * 1000)
    status_code = "success" if success else "failed"
    status_obj = await repo.get_execution_status_by_code(session, status_code)
    if status_obj:
        await repo.update_execution(
            session,
            execution_id,
            {
                "completed_at": completed_at,
                "duration_ms": duration_ms,
                "status_id": status_obj.id,
                "result_summary": str(result) if success else None,
                "error_message": error_message,
            },
        )
        await session.commit()


def queued_execution() -> str:
    execution_id = uuid.uuid4()

    async def insert() -> None:
        async with get_runtime().session() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
                    "VALUES (:id, 'tests.seed.my_async_task', '[]', '{}', 'schedule', :queued)"
                ),
                {"id": execution_id, "queued": ExecutionStatus.QUEUED.id},
            )

    get_runtime().run(insert())
    return str(execution_id)


def fetch(execution_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with get_runtime().session() as session:
            result = await session.execute(
                text(
                    "SELECT s.code, e.* FROM executions e "
                    "JOIN execution_statuses s ON s.id = e.status_id WHERE e.id = :id"
                ),
                {"id": uuid.UUID(execution_id)},
            )
            return dict(result.mappings().one())

    return get_runtime().run(read())


# The seed's own helper relies on asyncio.get_event_loop() creating a loop.
pytestmark = pytest.mark.filterwarnings("ignore:There is no current event loop")


def test_seed_pattern_records_success() -> None:
    execution_id = queued_execution()
    outcome = my_async_task.apply(kwargs={"execution_id": execution_id, "param1": "x"})
    assert outcome.get() == {"status": "success", "processed": True}
    row = fetch(execution_id)
    assert row["code"] == "success"
    assert row["result_summary"] == "{'status': 'success', 'processed': True}"
    assert row["completed_at"] is not None
    assert row["duration_ms"] >= 0
    assert row["error_message"] is None


def test_seed_pattern_records_failure_after_its_retries() -> None:
    execution_id = queued_execution()
    outcome = my_async_task.apply(kwargs={"execution_id": execution_id, "param1": "explode"})
    assert outcome.failed()
    assert isinstance(outcome.result, ValueError)
    row = fetch(execution_id)
    assert row["code"] == "failed"
    assert row["error_message"] == "param1 exploded"
    assert row["result_summary"] is None
