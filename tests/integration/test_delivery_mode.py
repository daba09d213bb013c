"""RabbitMQ delivery mode: persistent by default, transient when configured (Celery's
`task_default_delivery_mode`, which SCHEDULER_BROKER_DELIVERY_MODE sets on the project's app)."""

from __future__ import annotations

import uuid

import pytest

from config.celery import app
from config.settings import get_settings
from scheduler.broker.frames import OutgoingMessage
from scheduler.broker.publisher import Publisher
from tests.conftest import amqp_url_or_skip
from tests.support.brokers import BrokerUnderTest, Connection


def test_the_apps_delivery_mode_comes_from_the_setting() -> None:
    assert app.conf.task_default_delivery_mode == get_settings().broker_delivery_mode


@pytest.mark.parametrize(("mode", "expected"), [("persistent", 2), ("transient", 1)])
def test_messages_carry_the_configured_delivery_mode(mode: str, expected: int) -> None:
    """On RabbitMQ (Redis has no delivery mode: its own persistence settings decide)."""
    rabbitmq = BrokerUnderTest("rabbitmq", amqp_url_or_skip(), queue="")
    rabbitmq.queue = rabbitmq.new_queue()
    saved = app.conf.broker_url, app.conf.task_default_delivery_mode
    app.conf.broker_url, app.conf.task_default_delivery_mode = rabbitmq.url, mode
    publisher = Publisher(app)
    try:
        publisher.publish(
            [OutgoingMessage(str(uuid.uuid4()), "demo.noop", [], {}, {"queue": rabbitmq.queue})]
        )
        with Connection(rabbitmq.url) as connection:
            message = connection.channel().basic_get(rabbitmq.queue, no_ack=True)
        assert message is not None
        assert message.properties["delivery_mode"] == expected
    finally:
        publisher.close()
        rabbitmq.cleanup()
        app.conf.broker_url, app.conf.task_default_delivery_mode = saved
