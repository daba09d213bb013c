"""`scheduler.api` against a real database: sync functions on the process runtime and async
twins on the caller's session (which the caller commits or rolls back)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import api
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError, NotFoundError
from tests.support.procs import query


def test_sync_upsert_trigger_history_stats_remove(database_url: str, broker_url: str) -> None:
    nightly = api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *")
    assert api.upsert_schedule(nightly) is api.UpsertOutcome.CREATED
    assert api.upsert_schedule(nightly) is api.UpsertOutcome.UNCHANGED
    every = api.ScheduleDefinition(name="nightly", task="demo.noop", interval_seconds=Decimal(60))
    assert api.upsert_schedule(every) is api.UpsertOutcome.UPDATED
    [row] = api.list_schedules()
    assert (row["name"], row["interval_seconds"], row["cron"]) == ("nightly", Decimal(60), None)

    with pytest.raises(InvalidScheduleError, match="not registered"):
        api.upsert_schedule(api.ScheduleDefinition(name="x", task="no.such", cron="@daily"))
    with pytest.raises(InvalidScheduleError, match="invalid cron"):
        api.upsert_schedule(api.ScheduleDefinition(name="x", task="demo.noop", cron="99 * * * *"))
    assert [r["name"] for r in api.list_schedules()] == ["nightly"]

    result = api.trigger("nightly")
    assert result.status is ExecutionStatus.QUEUED
    [run] = api.history(schedule="nightly", limit=10)
    assert run["id"] == result.execution_id
    assert run["status"] == "queued"
    assert api.get_execution(str(result.execution_id))["schedule"] == "nightly"
    with pytest.raises(NotFoundError):
        api.get_execution(uuid.uuid4())
    with pytest.raises(NotFoundError, match="not an execution id"):
        api.get_execution("42")
    with pytest.raises(NotFoundError, match="no schedule named"):
        api.history(schedule="missing")
    with pytest.raises(InvalidScheduleError):
        api.history(limit=0)

    query(
        database_url,
        "UPDATE executions SET status_id = $1, duration_ms = 250, completed_at = now()",
        ExecutionStatus.FAILED.id,
    )
    [stat] = api.stats(schedule="nightly")
    assert (stat["runs"], stat["failed"], stat["success"], stat["max_ms"]) == (1, 1, 0, 250)
    assert stat["last_failure_at"] is not None
    assert api.stats(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert api.history(status="failed")[0]["id"] == result.execution_id
    assert api.history(status="success") == []

    api.remove_schedule("nightly")
    assert api.list_schedules() == []
    with pytest.raises(NotFoundError):
        api.remove_schedule("nightly")


async def test_async_twins_use_the_callers_session(session: AsyncSession) -> None:
    definition = api.ScheduleDefinition(name="hourly", task="demo.noop", cron="@hourly")
    outcome = await api.aupsert_schedule(definition, session=session)
    assert outcome is api.UpsertOutcome.CREATED
    await session.rollback()
    assert await api.alist_schedules(session=session) == []

    await api.aupsert_schedule(definition, session=session)
    await session.commit()
    assert [r["name"] for r in await api.alist_schedules(session=session)] == ["hourly"]
    assert await api.ahistory(schedule="hourly", session=session) == []
    assert await api.astats(schedule="hourly", session=session) == []
    with pytest.raises(NotFoundError):
        await api.aget_execution(uuid.uuid4(), session=session)
    await api.aremove_schedule("hourly", session=session)
    await session.commit()
    assert await api.alist_schedules(session=session) == []
