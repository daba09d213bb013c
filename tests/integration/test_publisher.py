"""The Redis fast path writes exactly what kombu would, and a worker-side consumer reads it."""

from __future__ import annotations

import json
from typing import Any

import redis

from config.celery import app
from scheduler.broker.frames import OutgoingMessage
from scheduler.broker.publisher import Publisher


def _pop_all(broker_url: str, queue: str = "celery") -> list[dict[str, Any]]:
    client = redis.Redis.from_url(broker_url)
    try:
        return [json.loads(m) for m in reversed(client.lrange(queue, 0, -1))]
    finally:
        client.delete(queue)
        client.close()


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    message = json.loads(json.dumps(message))
    message["properties"].pop("delivery_tag")
    for key in ("eta", "origin", "expires"):
        message["headers"].pop(key)
    return message


def test_fast_path_matches_kombus_wire_format(broker_url: str) -> None:
    message = OutgoingMessage(
        execution_id="0b7f6a8e-6c3c-4a55-9a0e-1b2c3d4e5f60",
        task="demo.sleep",
        args=[1, "two"],
        kwargs={"seconds": 0.1, "execution_id": "0b7f6a8e-6c3c-4a55-9a0e-1b2c3d4e5f60"},
        options={"headers": {"tenant": "acme"}},
        countdown_s=1.5,
    )
    fast = Publisher(app)
    fast.publish([message])
    fast.close()
    generic = Publisher(app)
    generic._redis_url = None  # force kombu's producer path
    generic.publish([message])
    generic.close()
    ours, kombus = _pop_all(broker_url)
    assert _comparable(ours) == _comparable(kombus)
    assert ours["headers"]["eta"] is not None
    assert ours["headers"]["tenant"] == "acme"


def test_queue_option_routes_to_that_queue(broker_url: str) -> None:
    publisher = Publisher(app)
    publisher.publish(
        [
            OutgoingMessage(
                "11111111-2222-3333-4444-555555555555", "demo.noop", [], {}, {"queue": "reports"}
            )
        ]
    )
    publisher.close()
    assert [m["headers"]["id"] for m in _pop_all(broker_url, "reports")] == [
        "11111111-2222-3333-4444-555555555555"
    ]


def test_kombu_consumer_decodes_the_fast_path(broker_url: str) -> None:
    publisher = Publisher(app)
    publisher.publish(
        [OutgoingMessage("aaaaaaaa-2222-3333-4444-555555555555", "demo.noop", [3], {"k": 1}, {})]
    )
    publisher.close()
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        received = queue.get(timeout=5)
        assert received.headers["id"] == "aaaaaaaa-2222-3333-4444-555555555555"
        assert received.decode() == [
            [3],
            {"k": 1},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
        received.ack()
        queue.close()
