"""A message's ETA (a schedule's jitter) and expiry are instants of the database clock, on every
publishing path, never of the beat host's clock.

The process clock is set 7 minutes ahead of the host's, as a reading of a database on a host
whose clock is right would set it when this host's clock is 7 minutes slow.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from config.celery import app
from scheduler.broker.frames import OutgoingMessage
from scheduler.broker.publisher import Publisher
from scheduler.runtime import clock
from tests.support.brokers import BrokerUnderTest, Connection

AHEAD = timedelta(minutes=7)
JITTER_S = 30.0
EXPIRES_S = 600
TOLERANCE = timedelta(seconds=5)


@pytest.fixture
def database_clock_ahead() -> Iterator[None]:
    saved = clock.CLOCK._anchor, clock.CLOCK.offset_s
    now = time.monotonic()
    clock.CLOCK.set(datetime.now(UTC) + AHEAD, now, now)
    try:
        yield
    finally:
        clock.CLOCK._anchor, clock.CLOCK.offset_s = saved


def _headers(broker: BrokerUnderTest) -> dict[str, Any]:
    """The headers of the one message waiting in the broker's queue (any priority list)."""
    if broker.kind == "redis":
        client = redis.Redis.from_url(broker.url)
        try:
            keys = [k for k in client.keys(f"{broker.queue}*") if client.type(k) == b"list"]
            raw = [m for k in keys for m in client.lrange(k, 0, -1)]
        finally:
            client.close()
        assert len(raw) == 1, raw
        headers: dict[str, Any] = json.loads(raw[0])["headers"]
        return headers
    with Connection(broker.url) as connection:
        channel = connection.channel()
        message = channel.basic_get(broker.queue, no_ack=True)
        assert message is not None
        return dict(message.headers)


def _assert_database_instants(headers: dict[str, Any], published_at: datetime) -> None:
    eta = datetime.fromisoformat(headers["eta"])
    expires = datetime.fromisoformat(headers["expires"])
    assert abs(eta - (published_at + timedelta(seconds=JITTER_S))) < TOLERANCE, headers
    assert abs(expires - (published_at + timedelta(seconds=EXPIRES_S))) < TOLERANCE, headers


def _publish_one(options: dict[str, Any]) -> datetime:
    message = OutgoingMessage(str(uuid.uuid4()), "demo.noop", [], {}, options, countdown_s=JITTER_S)
    publisher = Publisher(app)
    try:
        publisher.publish([message])
    finally:
        publisher.close()
    published_at = clock.now()
    assert published_at - datetime.now(UTC) > AHEAD - TOLERANCE  # the clock under test
    return published_at


def test_eta_and_expiry_come_from_the_database_clock(
    broker: BrokerUnderTest, database_clock_ahead: None
) -> None:
    """Each broker's own path: Redis wire format, AMQP frames."""
    published_at = _publish_one({"queue": broker.queue, "expires": EXPIRES_S})
    _assert_database_instants(_headers(broker), published_at)


def test_kombus_path_takes_the_database_clock_too(
    broker_url: str, database_clock_ahead: None
) -> None:
    """A priority on Redis goes through kombu's producer, which would count from the host."""
    assert app.conf.broker_url == broker_url
    under_test = BrokerUnderTest("redis", broker_url, queue="clock-priority")
    published_at = _publish_one({"queue": under_test.queue, "expires": EXPIRES_S, "priority": 5})
    _assert_database_instants(_headers(under_test), published_at)


def test_a_prepared_message_counts_its_jitter_from_its_slot(
    broker: BrokerUnderTest, database_clock_ahead: None
) -> None:
    """A run written ahead has its message built before its slot: its ETA is the slot plus the
    jitter, whatever the host's clock says."""
    slot = clock.now() + timedelta(seconds=2)
    options: dict[str, Any] = {"queue": broker.queue, "expires": EXPIRES_S}
    publisher = Publisher(app)
    try:
        message = OutgoingMessage(
            str(uuid.uuid4()), "demo.noop", [], {}, options, countdown_s=JITTER_S
        )
        publisher.publish([publisher.prepare(message, slot)])
    finally:
        with contextlib.suppress(Exception):
            publisher.close()
    _assert_database_instants(_headers(broker), slot)
