"""Publishing execution rows as Celery task messages, in bulk, over one held connection.

Messages are Celery protocol 2, JSON, with `task_id = execution_id`. They go straight to the
destination queue (kombu's anonymous exchange: routing key = queue name), and workers consume
them exactly as if `send_task` had sent them.

On a Redis broker the messages are built here, in kombu's Redis wire format, and pushed in
one pipeline: building one costs a few microseconds, where kombu's generic publish path
costs ~100 us a message. Other brokers (and priorities) go through a kombu producer batch.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from kombu import messaging

log = logging.getLogger(__name__)
BATCH_SIZE = 1000


@dataclass(frozen=True)
class OutgoingMessage:
    execution_id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    countdown_s: float = 0.0
    wire: tuple[str, str] | None = None
    """(queue, payload) in Redis wire format, built ahead by `Publisher.prepare`."""


class Publisher:
    """One held broker connection and producer; reconnects after a failure."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._producer: Any = None
        self._lock = threading.Lock()
        url = str(app.conf.broker_url or "")
        self._redis_url = url if url.startswith(("redis://", "rediss://", "unix://")) else None
        self._redis: Any = None
        self._queues: dict[tuple[str, str | None], str] = {}
        self._origin = f"{os.getpid()}@{socket.gethostname()}"

    def _ensure(self) -> Any:
        if self._producer is None:
            connection = self.app.connection_for_write()
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            producer_cls: Any = messaging.Producer
            self._producer = producer_cls(connection.default_channel, serializer="json")
        return self._producer

    def _queue_for(self, task: str, options: dict[str, Any]) -> str:
        wanted = options.get("queue")
        key = (task, str(wanted) if wanted else None)
        queue = self._queues.get(key)
        if queue is None:
            registered = self.app.tasks.get(task)
            own = getattr(registered, "queue", None) if registered is not None else None
            queue = str(wanted or own or self.app.conf.task_default_queue)
            self._queues[key] = queue
        return queue

    def _fast(self, message: OutgoingMessage) -> bool:
        """Goes out through the Redis wire-format path (priorities need kombu's)."""
        return self._redis_url is not None and not message.options.get("priority")

    def prepare(self, message: OutgoingMessage, at: datetime) -> OutgoingMessage:
        """`message` with its wire form built now, to be published at `at` (a run written
        ahead): publishing it then is a push of ready bytes."""
        if not self._fast(message):
            return message
        queue = self._queue_for(message.task, message.options)
        return dataclasses.replace(
            message, wire=(queue, redis_payload(message, queue, self._origin, at))
        )

    def _publish_redis(self, messages: Sequence[OutgoingMessage]) -> None:
        import redis

        now = datetime.now(UTC)
        by_queue: dict[str, list[str]] = {}
        for message in messages:
            queue, payload = message.wire or self._wire(message, now)
            by_queue.setdefault(queue, []).append(payload)
        with self._lock:
            try:
                if self._redis is None:
                    assert self._redis_url is not None
                    self._redis = redis.Redis.from_url(
                        self._redis_url, socket_timeout=10, socket_connect_timeout=5
                    )
                pipe = self._redis.pipeline(transaction=False)
                for queue, payloads in by_queue.items():
                    # one LPUSH per chunk: the values go in in order (consumers pop the other end)
                    for start in range(0, len(payloads), BATCH_SIZE):
                        pipe.lpush(queue, *payloads[start : start + BATCH_SIZE])
                pipe.execute()
            except Exception:
                self._reset()
                raise

    def _wire(self, message: OutgoingMessage, now: datetime) -> tuple[str, str]:
        queue = self._queue_for(message.task, message.options)
        return queue, redis_payload(message, queue, self._origin, now)

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish all `messages` or raise; a failure leaves the connection to be rebuilt."""
        if not messages:
            return
        if all(self._fast(m) for m in messages):
            self._publish_redis(messages)
            return
        with self._lock:
            try:
                producer = self._ensure()
                amqp = self.app.amqp
                with producer.batch(max_size=BATCH_SIZE):
                    for message in messages:
                        options = message.options
                        headers, properties, body, _ = amqp.as_task_v2(
                            message.execution_id,
                            message.task,
                            args=message.args,
                            kwargs=message.kwargs,
                            countdown=message.countdown_s or None,
                            expires=options.get("expires"),
                            time_limit=options.get("time_limit"),
                            soft_time_limit=options.get("soft_time_limit"),
                        )
                        extra = options.get("headers")
                        if isinstance(extra, dict):
                            headers.update(extra)
                        producer.publish(
                            body,
                            exchange="",
                            routing_key=self._queue_for(message.task, options),
                            serializer="json",
                            headers=headers,
                            priority=int(options.get("priority") or 0),
                            retry=False,
                            **properties,
                        )
            except Exception:
                self._reset()
                raise

    def _reset(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing a broken Redis connection failed", exc_info=True)
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing a broken broker connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._reset()


_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _iso_after(now: datetime, seconds: Any) -> str | None:
    if seconds is None or seconds == 0:
        return None
    if isinstance(seconds, str):
        return seconds
    return (now + timedelta(seconds=float(seconds))).isoformat()


def redis_payload(message: OutgoingMessage, queue: str, origin: str, now: datetime) -> str:
    """One task message in kombu's Redis format: Celery protocol 2, JSON body, base64."""
    body = json.dumps([message.args, message.kwargs, _EMBED]).encode()
    options = message.options
    headers: dict[str, Any] = {
        "lang": "py",
        "task": message.task,
        "id": message.execution_id,
        "shadow": None,
        "eta": _iso_after(now, message.countdown_s),
        "expires": _iso_after(now, options.get("expires")),
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [options.get("time_limit"), options.get("soft_time_limit")],
        "root_id": message.execution_id,
        "parent_id": None,
        "argsrepr": repr(message.args),
        "kwargsrepr": repr(message.kwargs),
        "origin": origin,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    extra = options.get("headers")
    if isinstance(extra, dict):
        headers.update(extra)
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": message.execution_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
