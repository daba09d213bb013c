"""The beat's messages on RabbitMQ: without the task headers that restate a worker's defaults
(`scheduler.broker.frames.ABSENT_MEANS`), a worker reads the same request as from the
message `send_task` sends for the same task and id; a run written ahead is framed when it is
prepared."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.app.task import Context, get_actual_ignore_result
from celery.worker.request import Request

from config.celery import app
from scheduler.broker.frames import ABSENT_MEANS, OutgoingMessage
from scheduler.broker.publisher import CONNECT_AHEAD_RETRY_S, Publisher
from tasks import demo
from tests.conftest import amqp_url_or_skip
from tests.support.brokers import BrokerUnderTest, Connection
from tests.support.procs import wait_for

READ = ("name", "eta", "expires", "time_limits", "ignore_result", "argsrepr", "kwargsrepr")
"""What the worker's `Request` makes of a message, besides the task context."""


def _request(channel: Any, queue: str) -> Request:
    raw = channel.basic_get(queue, no_ack=True)
    assert raw is not None
    return Request(channel.message_to_python(raw), app=app, task=demo.noop)


def test_a_worker_reads_the_same_request_as_from_send_task() -> None:
    rabbitmq = BrokerUnderTest("rabbitmq", amqp_url_or_skip(), queue="")
    rabbitmq.queue = rabbitmq.new_queue()
    saved = app.conf.broker_url
    app.conf.broker_url = rabbitmq.url
    publisher = Publisher(app)
    execution_id = str(uuid.uuid4())
    kwargs = {"execution_id": execution_id, "n": 3}
    try:
        publisher.publish(
            [OutgoingMessage(execution_id, "demo.noop", [1], kwargs, {"queue": rabbitmq.queue})]
        )
        # on a connection of its own: the app's producer pool may hold an earlier test's broker
        with app.connection_for_write(rabbitmq.url) as connection:
            app.send_task(
                "demo.noop",
                args=[1],
                kwargs=kwargs,
                task_id=execution_id,
                queue=rabbitmq.queue,
                connection=connection,
            )
        wait_for(lambda: rabbitmq.depth() == 2, timeout_s=10)  # send_task is not confirmed
        with Connection(rabbitmq.url) as connection:
            channel = connection.default_channel
            ours, theirs = _request(channel, rabbitmq.queue), _request(channel, rabbitmq.queue)
        assert set(ABSENT_MEANS).isdisjoint(ours.request_dict)
        assert set(ABSENT_MEANS) <= set(theirs.request_dict)
        assert {k: getattr(ours, k) for k in READ} == {k: getattr(theirs, k) for k in READ}
        assert (ours.stamps, ours.stamped_headers, ours.replaced_task_nesting) == (
            theirs.stamps,
            theirs.stamped_headers,
            theirs.replaced_task_nesting,
        )
        ours_context, theirs_context = Context(ours.request_dict), Context(theirs.request_dict)
        for key in set(ABSENT_MEANS) - {"ignore_result", "stamps"}:
            assert getattr(ours_context, key) == getattr(theirs_context, key), key
        assert not ours_context.stamps  # None here, send_task's {} there
        assert not theirs_context.stamps
        assert get_actual_ignore_result(demo.noop, ours_context) is get_actual_ignore_result(
            demo.noop, theirs_context
        )
        assert (ours.id, ours.args, ours.kwargs) == (theirs.id, [1], kwargs)
    finally:
        publisher.close()
        rabbitmq.cleanup()
        app.conf.broker_url = saved


def test_a_run_written_ahead_is_framed_when_prepared_and_an_outage_is_not_retried_per_run() -> None:
    """The first prepared run connects, so that a slot's publish is one write of ready
    frames; with the broker unreachable, one attempt, then none for a while."""
    url = amqp_url_or_skip()
    saved = app.conf.broker_url
    slot = datetime.now(UTC) + timedelta(seconds=5)
    publisher = Publisher(app)
    try:
        for broker_url, framed in ((url, True), ("amqp://guest:guest@127.0.0.1:1//", False)):
            app.conf.broker_url = broker_url
            publisher.close()
            publisher = Publisher(app)
            prepared = [
                publisher.prepare(
                    OutgoingMessage(str(uuid.uuid4()), "demo.noop", [], {}, {"queue": "q"}), slot
                )
                for _ in range(3)
            ]
            encoded = [p.amqp_message for p in prepared]
            assert all(e is not None and bool(e._framed) is framed for e in encoded), broker_url
            assert (
                publisher._connect_ahead_after == 0.0
                if framed
                else (publisher._connect_ahead_after > time.monotonic() + CONNECT_AHEAD_RETRY_S - 5)
            )
    finally:
        publisher.close()
        app.conf.broker_url = saved
