"""The dispatcher on a real database and broker: ticks, exactly-once slots, sweep, trigger."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.beat.dispatcher import Dispatcher
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError, NotFoundError
from tests.support.brokers import queued_messages
from tests.support.sqlhelp import sql
from tests.support.status import PENDING, QUEUED

NOW = datetime.now(UTC).replace(microsecond=0)


async def test_raw_insert_is_computed_fired_published_and_queued(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, kwargs) "
        "VALUES ('every-10s', 'demo.noop', 10, '{\"x\": 1}')",
    )
    result = await dispatcher.tick(NOW)
    assert (result.inserted, result.published) == (1, 1)
    rows = await sql(
        engine,
        "SELECT e.id, e.status_id, e.scheduled_for, e.trigger, e.kwargs, e.queued_at, "
        "s.next_run_at, s.total_run_count FROM executions e JOIN schedules s ON s.id = e.schedule_id",
    )
    assert len(rows) == 1
    run = rows[0]
    assert run["status_id"] == ExecutionStatus.QUEUED.id
    assert run["queued_at"] is not None
    assert run["scheduled_for"] == NOW
    assert run["next_run_at"] == NOW + timedelta(seconds=10)
    assert run["total_run_count"] == 1
    messages = queued_messages(broker_url)
    assert len(messages) == 1
    headers = messages[0]["headers"]
    assert isinstance(headers, dict)
    assert headers["id"] == str(run["id"])
    assert headers["task"] == "demo.noop"
    assert messages[0]["content-type"] == "application/json"
    # the same instant again: nothing new, the slot exists once
    again = await dispatcher.tick(NOW)
    assert again.inserted == 0
    assert len(queued_messages(broker_url)) == 1


async def test_a_slot_is_inserted_once_even_when_replanned(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "VALUES ('grid', 'demo.noop', 60, :start)",
        start=NOW,
    )
    await dispatcher.tick(NOW)
    # someone rewinds next_run_at by hand: the slot is planned again but not inserted twice
    await sql(engine, "UPDATE schedules SET next_run_at = :t", t=NOW)
    result = await dispatcher.tick(NOW + timedelta(seconds=1))
    assert result.inserted == 0
    assert len(queued_messages(broker_url)) == 1
    # a slot that was not inserted is not counted as a run
    counts = await sql(engine, "SELECT total_run_count FROM schedules WHERE name = 'grid'")
    assert [r["total_run_count"] for r in counts] == [1]


async def test_bad_rows_are_flagged_and_others_run(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, timezone) VALUES "
        "('good', 'demo.noop', 5, 'UTC'), ('unknown-task', 'nope.nope', 5, 'UTC'), "
        "('bad-zone', 'demo.noop', 5, 'Mars/Base')",
    )
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron) VALUES ('bad-cron', 'demo.noop', '61 * * * *')",
    )
    result = await dispatcher.tick(NOW)
    assert result.flagged == 3
    assert result.published == 1
    rows = {
        r["name"]: r
        for r in await sql(engine, "SELECT name, last_error, next_run_at FROM schedules")
    }
    assert rows["good"]["last_error"] is None
    assert "not registered" in str(rows["unknown-task"]["last_error"])
    assert "time zone" in str(rows["bad-zone"]["last_error"])
    assert "invalid cron" in str(rows["bad-cron"]["last_error"])
    # flagged rows are not picked again until edited
    assert (await dispatcher.tick(NOW + timedelta(seconds=1))).locked == 0
    await sql(engine, "UPDATE schedules SET timezone = 'Europe/Paris' WHERE name = 'bad-zone'")
    fixed = await sql(engine, "SELECT last_error, next_run_at FROM schedules WHERE name='bad-zone'")
    assert fixed[0]["last_error"] is None
    assert (await dispatcher.tick(NOW + timedelta(seconds=2))).published == 1


async def test_disabled_rows_do_not_fire(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, enabled) "
        "VALUES ('off', 'demo.noop', 1, false)",
    )
    assert (await dispatcher.tick(NOW)).locked == 0
    assert queued_messages(broker_url) == []


async def test_sweep_republishes_pending_rows_with_the_same_id(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    execution_id = uuid.uuid4()
    await sql(
        engine,
        "INSERT INTO executions (id, task, args, kwargs, trigger, status_id, created_at) "
        f"VALUES (:id, 'demo.noop', '[]', :kw, 'manual', {PENDING}, :t)",
        id=execution_id,
        kw=json.dumps({"execution_id": str(execution_id)}),
        t=NOW - timedelta(seconds=30),
    )
    assert await dispatcher.sweep(NOW) == 1
    messages = queued_messages(broker_url)
    assert [m["headers"]["id"] for m in messages] == [str(execution_id)]  # type: ignore[index]
    status = await sql(engine, "SELECT status_id FROM executions")
    assert status[0]["status_id"] == ExecutionStatus.QUEUED.id
    assert await dispatcher.sweep(NOW) == 0


async def test_runs_queued_just_before_a_broker_outage_are_published_again(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker may have popped a message and lost it with the broker: once the broker is
    back, the runs queued shortly before the outage go out again (same id; the claim makes a
    second delivery run nothing). Older queued runs, and started ones, are left alone."""
    now = datetime.now(UTC)
    rows = {
        "recent": (now - timedelta(seconds=3), QUEUED),
        "old": (now - timedelta(minutes=5), QUEUED),
    }
    rows["started"] = (now - timedelta(seconds=3), ExecutionStatus.RUNNING.id)
    ids = {name: uuid.uuid4() for name in rows}
    for name, (queued_at, status) in rows.items():
        await sql(
            engine,
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id, queued_at) "
            "VALUES (:id, 'demo.noop', '[]', '{}', 'manual', :status, :q)",
            id=ids[name],
            status=status,
            q=queued_at,
        )

    def broker_down(messages: object) -> None:
        raise ConnectionError("broker down")

    with monkeypatch.context() as patch:
        patch.setattr(dispatcher.publisher, "publish", broker_down)
        triggered = await sql(
            engine,
            "INSERT INTO schedules (name, task, cron) VALUES ('t', 'demo.noop', '0 3 * * *') "
            "RETURNING id",
        )
        assert triggered
        result = await dispatcher.trigger("t", force=False, now=now)
        assert result.status is ExecutionStatus.PENDING  # the outage, as the beat sees it
        # (its row stays pending: the sweep publishes it once it is a few seconds old)
    await dispatcher.sweep(datetime.now(UTC))
    published = [m["headers"]["id"] for m in queued_messages(broker_url)]  # type: ignore[index]
    assert published == [str(ids["recent"])]
    await dispatcher.sweep(datetime.now(UTC))  # once: the broker is back
    assert len(queued_messages(broker_url)) == 1


async def test_backlog_larger_than_a_batch_is_drained_in_one_pass(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    now = datetime.now(UTC)  # batches after the first are planned at the wall clock
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'bulk-' || i, 'demo.noop', 3600, :t FROM generate_series(1, 120) i",
        t=now,
    )
    await dispatcher.run_once(now)
    assert len(queued_messages(broker_url)) == 120


async def test_manual_trigger_and_overlap(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron, overlap_policy) "
        "VALUES ('nightly', 'demo.noop', '0 3 * * *', 'skip')",
    )
    first = await dispatcher.trigger("nightly", force=False, now=NOW)
    assert first.status is ExecutionStatus.QUEUED
    second = await dispatcher.trigger("nightly", force=False, now=NOW)
    assert second.status is ExecutionStatus.SKIPPED
    forced = await dispatcher.trigger("nightly", force=True, now=NOW)
    assert forced.status is ExecutionStatus.QUEUED
    rows = await sql(engine, "SELECT trigger, scheduled_for FROM executions")
    assert {r["trigger"] for r in rows} == {"manual"}
    assert all(r["scheduled_for"] is None for r in rows)
    assert len(queued_messages(broker_url)) == 2
    with pytest.raises(NotFoundError):
        await dispatcher.trigger("missing", force=False, now=NOW)


async def test_a_schedule_that_cannot_run_is_not_triggered(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron, options) "
        """VALUES ('loud', 'demo.noop', '@daily', '{"priority": "high"}')""",
    )
    with pytest.raises(InvalidScheduleError, match="'loud' cannot run: option priority"):
        await dispatcher.trigger("loud", force=True, now=NOW)
    assert await sql(engine, "SELECT id FROM executions") == []
    assert queued_messages(broker_url) == []


async def test_the_sweep_publishes_a_run_whose_schedule_options_went_bad(
    engine: AsyncEngine, dispatcher: Dispatcher, broker_url: str
) -> None:
    """Options edited into ones that cannot be sent after a run was written: the run goes
    out without them, and so does every other run published with it."""
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'edited-' || i, 'demo.noop', 3600, :t FROM generate_series(1, 2) i",
        t=NOW,
    )
    await dispatcher.tick(NOW)
    await sql(engine, f"UPDATE executions SET status_id = {PENDING}, queued_at = NULL")
    client = redis.Redis.from_url(broker_url)
    client.delete("celery")  # as if a beat died between commit and publish
    client.close()
    await sql(
        engine,
        """UPDATE schedules SET options = '{"priority": "high"}' WHERE name = 'edited-1'""",
    )
    assert await dispatcher.sweep(NOW + timedelta(seconds=30)) == 2
    assert len(queued_messages(broker_url)) == 2


async def test_notify_reaches_a_listener(engine: AsyncEngine, database_url: str) -> None:
    from scheduler.beat.listener import ChangeListener

    woken = asyncio.Event()
    listener = ChangeListener(database_url, woken.set)
    assert await listener.ensure()
    try:
        await sql(
            engine, "INSERT INTO schedules (name, task, cron) VALUES ('n', 'demo.noop', '@daily')"
        )
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        await listener.close()
