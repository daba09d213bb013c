"""Auto-pause after failures (writers racing, counting afresh after a resume, lost runs through
the reaper) and a buffered run held then released once, on a real database and broker."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from config.celery import app
from scheduler import api
from scheduler.broker.publisher import Publisher
from scheduler.core.domain import ExecutionStatus
from scheduler.worker import followup
from tests.support.history import insert_runs, schedule_row
from tests.support.procs import query


async def _racing_failures(database_url: str, ids: list[uuid.UUID], publisher: Publisher) -> None:
    """Each failure written by its own connection at the same moment, as workers do."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connections = [await asyncpg.connect(dsn) for _ in ids]
    try:
        await asyncio.gather(
            *(
                followup.finish_run(
                    conn,
                    execution_id,
                    status_id=ExecutionStatus.FAILED.id,
                    duration_ms=5,
                    completed_at=datetime.now(UTC),
                    error_type="RuntimeError",
                    error_message=f"disk full on {i}\nsecond line",
                    publisher=publisher,
                )
                for i, (conn, execution_id) in enumerate(zip(connections, ids, strict=True))
            )
        )
    finally:
        for conn in connections:
            await conn.close()


def test_auto_pause_after_n_failures_once_with_writers_racing(
    database_url: str, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="etl", task="demo.fail", cron="* * * * *", pause_after_failures=3
        )
    )
    insert_runs(database_url, "etl", ["failed", "success", "failed"])
    running = insert_runs(database_url, "etl", ["running"] * 6)
    publisher = Publisher(app)
    try:
        with caplog.at_level(logging.WARNING, logger="scheduler.worker.followup"):
            asyncio.run(_racing_failures(database_url, running[:1], publisher))
            assert schedule_row(database_url, "etl")["enabled"] is True  # 2 in a row: not yet
            asyncio.run(_racing_failures(database_url, running[1:], publisher))
    finally:
        publisher.close()
    row = schedule_row(database_url, "etl")
    assert row["enabled"] is False
    assert row["paused_by"] == followup.AUTO_PAUSE_ACTOR
    assert row["paused_reason"].startswith(
        "paused after 3 consecutive failures (last: disk full on"
    )
    assert "second line" not in row["paused_reason"]
    assert [r.message for r in caplog.records].count(f"schedule etl {row['paused_reason']}") == 1
    assert sum("consecutive failures" in r.message for r in caplog.records) == 1


def test_auto_pause_counts_afresh_after_resume_and_ignores_skips(
    database_url: str, broker_url: str
) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="etl", task="demo.fail", cron="* * * * *", pause_after_failures=2
        )
    )
    running = insert_runs(database_url, "etl", ["failed", "skipped", "running"])[2:]
    publisher = Publisher(app)
    try:
        asyncio.run(_racing_failures(database_url, running, publisher))
        assert schedule_row(database_url, "etl")["enabled"] is False
        api.resume_schedule("etl")
        more = insert_runs(database_url, "etl", ["running"], first_minute=10)
        asyncio.run(_racing_failures(database_url, more, publisher))
        assert schedule_row(database_url, "etl")["enabled"] is True  # one failure since resume
    finally:
        publisher.close()


def test_lost_runs_pause_through_the_reaper(database_url: str, broker_url: str) -> None:
    from scheduler.beat.reaper import reap_lost
    from scheduler.runtime.db import get_runtime

    api.upsert_schedule(
        api.ScheduleDefinition(
            name="etl", task="demo.fail", cron="* * * * *", pause_after_failures=2
        )
    )
    insert_runs(database_url, "etl", ["running", "running"])
    query(
        database_url,
        "UPDATE executions SET worker = 'gone@nowhere:1', started_at = now() - interval '1 hour'",
    )

    async def reap() -> int:
        async with get_runtime().sessions() as session, session.begin():
            return await reap_lost(session, now=datetime.now(UTC), time_limits_s={"demo.fail": 1.0})

    assert get_runtime().run(reap()) == 2
    row = schedule_row(database_url, "etl")
    assert row["enabled"] is False
    assert "(last: still running past its hard time limit)" in row["paused_reason"]


def test_buffered_run_is_held_then_released_once(database_url: str, broker_url: str) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="slow",
            task="demo.sleep",
            cron="0 3 * * *",
            overlap_policy="buffer_one",
            kwargs={"seconds": 2},
        )
    )
    [running] = insert_runs(database_url, "slow", ["running"])
    buffered = api.trigger("slow")
    assert buffered.status is ExecutionStatus.PENDING
    assert "starts when the run in progress has finished" in (buffered.reason or "")
    assert api.trigger("slow").status is ExecutionStatus.SKIPPED
    # the outbox sweep leaves a held run alone, however old
    query(database_url, "UPDATE executions SET created_at = created_at - interval '1 hour'")
    from scheduler.runtime.db import get_runtime
    from scheduler.store.outbox import OutboxStore

    async def stale() -> list[Any]:
        async with get_runtime().sessions() as session, session.begin():
            return await OutboxStore.lock_stale_pending(
                session, older_than=datetime.now(UTC), limit=100
            )

    assert get_runtime().run(stale()) == []
    publisher = Publisher(app)
    try:

        async def finish_twice() -> None:
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
            conn = await asyncpg.connect(dsn)
            try:
                for _ in range(2):  # a duplicate outcome changes nothing
                    await followup.finish_run(
                        conn,
                        running,
                        status_id=ExecutionStatus.SUCCESS.id,
                        duration_ms=5,
                        completed_at=datetime.now(UTC),
                        publisher=publisher,
                    )
            finally:
                await conn.close()

        asyncio.run(finish_twice())
    finally:
        publisher.close()
    row = query(
        database_url,
        "SELECT status_id, queued_at FROM executions WHERE id = $1",
        buffered.execution_id,
    )[0]
    assert row["status_id"] == ExecutionStatus.QUEUED.id
    assert row["queued_at"] is not None
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        messages = [json.loads(m) for m in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    [released] = [m for m in messages if m["headers"]["id"] == str(buffered.execution_id)]
    import base64

    args, kwargs, _ = json.loads(base64.b64decode(released["body"]))
    assert (args, kwargs) == ([], {"seconds": 2, "execution_id": str(buffered.execution_id)})
