"""The beat's publishing on each broker (Redis, RabbitMQ): a run is `queued` only once the
broker confirmed its message, the message waits in a queue no worker has declared, and runs
left `queued` unclaimed are published again or end `lost`."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from config.celery import app
from scheduler.beat.dispatcher import Dispatcher
from scheduler.broker.frames import OutgoingMessage
from scheduler.broker.publisher import Publisher
from scheduler.core.domain import ExecutionStatus
from scheduler.store.runs import RunStore
from tests.support.beat import build_dispatcher
from tests.support.brokers import BrokerUnderTest, Connection
from tests.support.sqlhelp import sql

NOW = datetime.now(UTC).replace(microsecond=0)
TIMEOUT_S = 60.0
LOST_AFTER_S = 600.0


@pytest.fixture
async def dispatcher(engine: AsyncEngine, broker: BrokerUnderTest) -> AsyncIterator[Dispatcher]:
    publisher = Publisher(app, confirm_timeout_s=5)
    yield build_dispatcher(
        engine,
        publisher,
        beat_max_batch=50,
        queued_timeout_s=TIMEOUT_S,
        queued_lost_after_s=LOST_AFTER_S,
    )
    publisher.close()


async def _schedule(engine: AsyncEngine, name: str, queue: str, overlap: str = "allow") -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at, options, overlap_policy) "
        f"VALUES ('{name}', 'demo.noop', 60, '{NOW.isoformat()}', "
        f"'{json.dumps({'queue': queue})}', '{overlap}')",
    )


async def _runs(engine: AsyncEngine) -> list[dict[str, object]]:
    return await sql(
        engine,
        "SELECT id, status_id, queued_at, error_type, error_message FROM executions "
        "ORDER BY scheduled_for",
    )


async def test_message_is_confirmed_and_waits_in_a_queue_no_worker_declared(
    engine: AsyncEngine, dispatcher: Dispatcher, broker: BrokerUnderTest
) -> None:
    """The destination queue is declared by the publisher (on RabbitMQ a message to an
    undeclared queue would be dropped), and the row is `queued` once the broker confirmed."""
    await _schedule(engine, "fresh-queue", broker.queue)
    result = await dispatcher.tick(NOW)
    assert (result.inserted, result.published) == (1, 1)
    [run] = await _runs(engine)
    assert run["status_id"] == ExecutionStatus.QUEUED.id
    assert broker.message_ids() == [str(run["id"])]
    assert broker.depth() == 1


def _block_queue(broker: BrokerUnderTest) -> None:
    """Make the broker refuse messages for `broker.queue`: on Redis the key holds a string
    (LPUSH fails with WRONGTYPE); on RabbitMQ the queue exists with other arguments (the
    publisher's declaration fails with PRECONDITION_FAILED)."""
    if broker.kind == "redis":
        client = redis.Redis.from_url(broker.url)
        client.set(broker.queue, "not a list")
        client.close()
        return
    with Connection(broker.url) as connection:
        connection.channel().queue_declare(broker.queue, durable=False, auto_delete=False)


def _unblock_queue(broker: BrokerUnderTest) -> None:
    if broker.kind == "redis":
        client = redis.Redis.from_url(broker.url)
        client.delete(broker.queue)
        client.close()
        return
    with Connection(broker.url) as connection:
        connection.channel().queue_delete(broker.queue)


async def test_a_publish_the_broker_refuses_leaves_the_run_pending_for_the_sweep(
    engine: AsyncEngine, dispatcher: Dispatcher, broker: BrokerUnderTest
) -> None:
    await _schedule(engine, "refused", broker.queue)
    _block_queue(broker)
    result = await dispatcher.tick(NOW)
    assert (result.inserted, result.published) == (1, 0)
    [run] = await _runs(engine)
    assert run["status_id"] == ExecutionStatus.PENDING.id
    assert run["queued_at"] is None
    _unblock_queue(broker)
    assert await dispatcher.sweep(NOW + timedelta(seconds=30)) == 1
    [run] = await _runs(engine)
    assert run["status_id"] == ExecutionStatus.QUEUED.id
    # once more after the failure (runs queued just before it are sent again): duplicates
    # of one task id, which run once
    assert set(broker.message_ids()) == {str(run["id"])}


async def test_task_routes_and_exchanges_are_honoured(broker: BrokerUnderTest) -> None:
    """A `task_routes` entry sending a task to a topic exchange: the publisher declares the
    exchange, the queue and the binding, as `send_task` does, and the message arrives."""
    from celery import Celery

    exchange_cls: Any = importlib.import_module("kombu").Exchange
    queue_cls: Any = importlib.import_module("kombu").Queue
    exchange = broker.new_queue()
    routed = Celery("routes", broker=broker.url, set_as_current=False)
    routed.conf.update(
        task_routes={"demo.sleep": {"queue": broker.queue, "routing_key": "reports.daily"}},
        task_queues=[
            queue_cls(broker.queue, exchange_cls(exchange, type="topic"), routing_key="reports.#"),
            queue_cls("celery"),
        ],
    )
    publisher = Publisher(routed, confirm_timeout_s=5)
    try:
        route = publisher.route("demo.sleep", {})
        assert (route.queue, route.routing_key) == (broker.queue, "reports.daily")
        assert route.exchange == exchange
        message = OutgoingMessage("a1b2c3d4-0000-4000-8000-000000000001", "demo.sleep", [], {}, {})
        publisher.publish([message])
        assert broker.message_ids() == [message.execution_id]
    finally:
        publisher.close()
        routed.close()


async def test_queued_run_whose_message_is_gone_is_republished_then_lost_and_unblocks_overlap(
    engine: AsyncEngine, dispatcher: Dispatcher, broker: BrokerUnderTest
) -> None:
    await _schedule(engine, "guarded", broker.queue, overlap="skip")
    await dispatcher.tick(NOW)
    [run] = await _runs(engine)
    broker.purge()  # the message is gone (lost by the broker, or popped by a dying worker)
    # within the bound: left alone
    assert await dispatcher.recover_queued(NOW + timedelta(seconds=TIMEOUT_S / 2)) == (0, 0)
    # past it, the queue empty: published again with the same task id, and `queued_at` moves
    later = datetime.now(UTC) + timedelta(seconds=TIMEOUT_S + 1)
    assert await dispatcher.recover_queued(later) == (1, 0)
    assert broker.message_ids() == [str(run["id"])]
    [again] = await _runs(engine)
    assert again["status_id"] == ExecutionStatus.QUEUED.id
    assert again["queued_at"] > run["queued_at"]  # type: ignore[operator]
    # the slot after: still guarded by the queued run
    await dispatcher.tick(NOW + timedelta(seconds=60))
    assert [r["status_id"] for r in await _runs(engine)] == [
        ExecutionStatus.QUEUED.id,
        ExecutionStatus.SKIPPED.id,
    ]
    broker.purge()
    # past the longer bound, never claimed: lost, with a reason
    end = datetime.now(UTC) + timedelta(seconds=LOST_AFTER_S + TIMEOUT_S + 1)
    assert await dispatcher.recover_queued(end) == (0, 1)
    first = (await _runs(engine))[0]
    assert first["status_id"] == ExecutionStatus.LOST.id
    assert first["error_type"] == "NeverClaimed"
    assert "no worker claimed it" in str(first["error_message"])
    # the guard no longer counts it: the next slot runs
    await dispatcher.tick(NOW + timedelta(seconds=120))
    assert (await _runs(engine))[-1]["status_id"] == ExecutionStatus.QUEUED.id
    # and if its message turns up after all (a worker held it), it still runs, once
    async with engine.connect() as connection:
        driver = await RunStore.driver_connection(connection)
        for expected in (1, None):  # claimed once; a second delivery runs nothing
            attempt = await RunStore.claim_execution(
                driver, str(run["id"]), task="demo.noop", args_json="[]", kwargs_json="{}",
                worker="w:1", now=end,
            )  # fmt: skip
            assert attempt == expected


async def test_a_run_waiting_in_a_backlog_is_never_republished_or_lost(
    engine: AsyncEngine, dispatcher: Dispatcher, broker: BrokerUnderTest
) -> None:
    await _schedule(engine, "backlogged", broker.queue)
    await dispatcher.tick(NOW)
    end = datetime.now(UTC) + timedelta(seconds=LOST_AFTER_S * 10)
    assert await dispatcher.recover_queued(end) == (0, 0)
    [run] = await _runs(engine)
    assert run["status_id"] == ExecutionStatus.QUEUED.id
    assert broker.message_ids() == [str(run["id"])]


async def test_a_schedule_may_set_its_own_queued_bounds(
    engine: AsyncEngine, dispatcher: Dispatcher, broker: BrokerUnderTest
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at, options) "
        f"VALUES ('own-bounds', 'demo.noop', 60, '{NOW.isoformat()}', "
        f"'{json.dumps({'queue': broker.queue, 'queued_timeout_s': 1, 'queued_lost_after_s': 5})}')",
    )
    await dispatcher.tick(datetime.now(UTC))  # written now: the lost bound counts from here
    broker.purge()
    [run] = await sql(engine, "SELECT created_at, queued_at FROM executions")
    created, queued = run["created_at"], run["queued_at"]
    assert isinstance(created, datetime)
    assert isinstance(queued, datetime)
    assert await dispatcher.recover_queued(queued + timedelta(seconds=2)) == (1, 0)
    broker.purge()
    end = max(created + timedelta(seconds=6), datetime.now(UTC) + timedelta(seconds=2))
    assert await dispatcher.recover_queued(end) == (0, 1)
