"""Reading the broker: what waits in a queue, for tests on Redis and on RabbitMQ."""

from __future__ import annotations

import contextlib
import importlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.support.procs import exported

Connection: Any = importlib.import_module("kombu").Connection
"""kombu's Connection (untyped): RabbitMQ helpers of the broker fixture."""


def queued_messages(broker_url: str, queue: str = "celery") -> list[dict[str, object]]:
    """The messages waiting in a Redis `queue`, newest first (left in place)."""
    client = redis.Redis.from_url(broker_url)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def published_ids(broker_url: str, queue: str = "celery") -> list[str]:
    """The task ids of the messages waiting in a Redis `queue`, newest first (left in place)."""
    client = redis.Redis.from_url(broker_url)
    try:
        return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def queue_length(broker_url: str, queue: str = "celery") -> int:
    client = redis.Redis.from_url(broker_url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


@dataclass
class BrokerUnderTest:
    """One broker under test: its URL and helpers to look into its queues."""

    kind: str
    """`redis` or `rabbitmq`."""
    url: str
    queue: str
    """A queue name of this test's own."""
    used: set[str] = field(default_factory=set)

    def new_queue(self) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.used.add(name)
        return name

    def depth(self, queue: str | None = None) -> int:
        queue = queue or self.queue
        if self.kind == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                return int(client.llen(queue))
            finally:
                client.close()
        with Connection(self.url) as connection:
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
            except Exception:  # no such queue
                return 0
            return int(count)

    def message_ids(self, queue: str | None = None) -> list[str]:
        """The task ids of the messages waiting in `queue`, oldest first (left in place)."""
        queue = queue or self.queue
        if self.kind == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                raw = client.lrange(queue, 0, -1)
            finally:
                client.close()
            return [json.loads(m)["headers"]["id"] for m in reversed(raw)]
        ids: list[str] = []
        with Connection(self.url) as connection:
            channel = connection.channel()
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                ids.append(message.headers["id"])
            channel.close()  # unacked: all go back to the queue
        return ids

    def purge(self, queue: str | None = None) -> None:
        queue = queue or self.queue
        if self.kind == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                client.delete(queue)
            finally:
                client.close()
            return
        with Connection(self.url) as connection:
            channel = connection.channel()
            with contextlib.suppress(Exception):  # no such queue: nothing to purge
                channel.queue_purge(queue)

    def cleanup(self) -> None:
        if self.kind != "rabbitmq":
            return
        with Connection(self.url) as connection:
            for queue in self.used:
                channel = connection.channel()
                with contextlib.suppress(Exception):  # already gone
                    channel.queue_delete(queue)
                    channel.exchange_delete(queue)


@contextlib.contextmanager
def app_on_broker(url: str) -> Iterator[None]:
    """`config.celery:app` and the processes started meanwhile on the broker at `url`
    (exported as BROKER_URL); kombu's connection and producer pools are emptied on the way in
    and out, so no publish goes to the broker of an earlier test."""
    from config.celery import app

    pools: Any = importlib.import_module("kombu.pools")

    def drop_pools() -> None:
        # kombu keeps one connection pool and one producer pool per broker URL in global
        # registries, and a pool closed in place stays there, closed: empty them (kombu's
        # reset, as after a fork) and let the app look its pools up again.
        pools.reset()
        app.amqp._producer_pool = app._pool = None

    previous_url = app.conf.broker_url
    with exported("BROKER_URL", url):
        app.conf.broker_url = url
        drop_pools()
        try:
            yield
        finally:
            drop_pools()
            app.conf.broker_url = previous_url
