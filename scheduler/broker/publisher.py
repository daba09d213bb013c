"""Publishing execution rows as Celery task messages, in bulk, over one held connection.

Messages are Celery protocol 2, JSON, with `task_id = execution_id`. They go where
`send_task` would send them (the app's `task_queues`, `task_routes` and exchanges; a plain
queue name is kombu's anonymous exchange with the queue name as routing key), and workers
consume them exactly as if `send_task` had sent them.

`publish` returns only once the broker has confirmed every message, else it raises and the
caller leaves the runs `pending` for the sweep:
- Redis (plain or Sentinel): the messages are built here, in kombu's Redis wire format, and
  pushed in one pipeline whose replies are the confirmation (building one costs a few
  microseconds, where kombu's generic publish path costs ~100 us a message).
- RabbitMQ: each destination queue (with its exchange and binding) is declared once per
  connection, as `send_task` declares it, so a queue no worker has declared yet keeps the
  message; the batch goes out on a channel in confirm mode and the publisher waits once for
  the broker's acks of all of it (`mandatory`: an unroutable message fails the batch).
- Other transports, and priorities on Redis, go through a kombu producer batch.

The messages themselves (`OutgoingMessage`, their Redis and AMQP frames) are built in
`scheduler.broker.frames`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery import Celery
from kombu import messaging

from scheduler.broker.connections import (
    ConfirmingChannel,
    EncodedMessage,
    PublishNotConfirmed,
    Route,
    is_amqp,
    is_redis,
    is_sentinel,
    redis_client,
    redis_queue_depth,
)
from scheduler.broker.frames import OutgoingMessage, amqp_message, instant_after, redis_payload
from scheduler.broker.routing import resolve_route
from scheduler.runtime import clock

log = logging.getLogger(__name__)
BATCH_SIZE = 1000
CONNECT_AHEAD_RETRY_S = 30.0
"""After a failed attempt to connect for framing held runs, how long before the next one
(the publish at a slot still connects as always)."""


class Publisher:
    """One held broker connection and producer; reconnects after a failure."""

    def __init__(self, app: Celery, *, confirm_timeout_s: float = 10.0) -> None:
        self.app = app
        self.confirm_timeout_s = confirm_timeout_s
        self._connection: Any = None
        self._producer: Any = None
        self._lock = threading.Lock()
        url = str(app.conf.broker_url or "")
        self._master_name: str | None = (app.conf.broker_transport_options or {}).get("master_name")
        self._redis_url = url if is_redis(url) or is_sentinel(url) else None
        self._amqp = is_amqp(url)
        self._redis: Any = None
        self._link: ConfirmingChannel | None = None
        self._routes: dict[tuple[str, str | None], Route] = {}
        self._origin = f"{os.getpid()}@{socket.gethostname()}"
        self._connect_ahead_after = 0.0

    def _ensure(self) -> Any:
        if self._producer is None:
            connection = self.app.connection_for_write()
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            producer_cls: Any = messaging.Producer
            self._producer = producer_cls(connection.default_channel, serializer="json")
        return self._producer

    def _ensure_link(self, *, retries: int = 1) -> ConfirmingChannel:
        if self._link is None:
            connection = self.app.connection_for_write()
            connection.ensure_connection(max_retries=retries)
            try:
                self._link = ConfirmingChannel(connection)
            except Exception:
                connection.release()
                raise
        return self._link

    def _link_for_framing(self) -> ConfirmingChannel | None:
        """The channel a held run's frames are built for: connected when the first run is
        prepared, so that its slot costs one write of ready frames (framing 10k messages at
        the slot took ~0.1 s). None while the broker cannot be reached; tried again after
        `CONNECT_AHEAD_RETRY_S`."""
        if self._link is None and time.monotonic() >= self._connect_ahead_after:
            with self._lock:
                try:
                    self._ensure_link(retries=0)  # one attempt: a slot's publish retries
                except Exception as exc:
                    self._connect_ahead_after = time.monotonic() + CONNECT_AHEAD_RETRY_S
                    log.info("could not connect ahead to frame held runs (%s)", exc)
        return self._link

    def route(self, task: str, options: dict[str, Any]) -> Route:
        """Where `send_task(task, queue=options.get("queue"))` would send the message: the
        option's queue, else the task's own `queue`, else `task_routes`, else the default queue.
        Resolved once per task and queue (a router function sees no arguments)."""
        wanted = options.get("queue")
        key = (task, str(wanted) if wanted else None)
        route = self._routes.get(key)
        if route is None:
            registered = self.app.tasks.get(task)
            own = getattr(registered, "queue", None) if registered is not None else None
            route = resolve_route(self.app, task, str(wanted or own or "") or None)
            self._routes[key] = route
        return route

    def _queue_for(self, task: str, options: dict[str, Any]) -> str:
        return self.route(task, options).queue

    def _fast(self, message: OutgoingMessage) -> bool:
        """Goes out through the Redis wire-format path (priorities and exchanges of their own
        need kombu's)."""
        return (
            self._redis_url is not None
            and not message.options.get("priority")
            and self.route(message.task, message.options).exchange == ""
        )

    def prepare(self, message: OutgoingMessage, at: datetime) -> OutgoingMessage:
        """`message` with its wire form built now, to be published at `at` (a run written
        ahead): publishing it then is a push of ready bytes."""
        if self._amqp:
            route = self.route(message.task, message.options)
            encoded = amqp_message(message, route, self._origin, at)
            link = self._link_for_framing()
            if link is not None:
                encoded.framed(*link.framing)
            return dataclasses.replace(message, amqp_message=encoded)
        if not self._fast(message):
            return message
        queue = self._queue_for(message.task, message.options)
        return dataclasses.replace(
            message, wire=(queue, redis_payload(message, queue, self._origin, at))
        )

    def _redis_client(self) -> Any:
        if self._redis is None:
            assert self._redis_url is not None
            self._redis = redis_client(
                self._redis_url,
                self._master_name,
                socket_timeout=10,
                socket_connect_timeout=5,
            )
        return self._redis

    def _publish_redis(self, messages: Sequence[OutgoingMessage]) -> None:
        now = clock.now()
        by_queue: dict[str, list[str]] = {}
        for message in messages:
            queue, payload = message.wire or self._wire(message, now)
            by_queue.setdefault(queue, []).append(payload)
        with self._lock:
            try:
                pipe = self._redis_client().pipeline(transaction=False)
                pushes = 0
                for queue, payloads in by_queue.items():
                    # one LPUSH per chunk: the values go in in order (consumers pop the other end)
                    for start in range(0, len(payloads), BATCH_SIZE):
                        pipe.lpush(queue, *payloads[start : start + BATCH_SIZE])
                        pushes += 1
                # the replies (one list length per push) are Redis's confirmation
                replies = pipe.execute()
                if len(replies) != pushes or not all(isinstance(r, int) for r in replies):
                    raise PublishNotConfirmed(f"Redis answered {replies[:3]!r} to a push")
            except Exception:
                self._reset()
                raise

    def _wire(self, message: OutgoingMessage, now: datetime) -> tuple[str, str]:
        queue = self._queue_for(message.task, message.options)
        return queue, redis_payload(message, queue, self._origin, now)

    def _publish_amqp(self, messages: Sequence[OutgoingMessage]) -> None:
        now = clock.now()
        with self._lock:
            try:
                link = self._ensure_link()
                encoded: list[EncodedMessage] = []
                for message in messages:
                    route = self.route(message.task, message.options)
                    link.declare(route)
                    encoded.append(
                        message.amqp_message or amqp_message(message, route, self._origin, now)
                    )
                for start in range(0, len(encoded), BATCH_SIZE):
                    link.publish(encoded[start : start + BATCH_SIZE])
                link.wait_confirmed(self.confirm_timeout_s)
            except Exception:
                self._reset()
                raise

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish all `messages` and return once the broker confirmed them, or raise; a
        failure leaves the connection to be rebuilt."""
        if not messages:
            return
        if self._amqp:
            self._publish_amqp(messages)
            return
        if all(self._fast(m) for m in messages):
            self._publish_redis(messages)
            return
        with self._lock:
            try:
                producer = self._ensure()
                amqp = self.app.amqp
                now = clock.now()
                with producer.batch(max_size=BATCH_SIZE):
                    for message in messages:
                        options = message.options
                        # instants given whole: Celery would add a countdown to the host's clock
                        headers, properties, body, _ = amqp.as_task_v2(
                            message.execution_id,
                            message.task,
                            args=message.args,
                            kwargs=message.kwargs,
                            eta=instant_after(now, message.countdown_s),
                            expires=instant_after(now, options.get("expires")),
                            time_limit=options.get("time_limit"),
                            soft_time_limit=options.get("soft_time_limit"),
                            ignore_result=None,  # as send_task: the task's own setting
                        )
                        extra = options.get("headers")
                        if isinstance(extra, dict):
                            headers.update(extra)
                        route = self.route(message.task, options)
                        producer.publish(
                            body,
                            exchange=route.exchange,
                            routing_key=route.routing_key,
                            declare=[route.declare] if route.declare is not None else None,
                            serializer="json",
                            headers=headers,
                            priority=int(options.get("priority") or 0),
                            delivery_mode=route.delivery_mode,
                            retry=False,
                            **properties,
                        )
            except Exception:
                self._reset()
                raise

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int | None]:
        """Messages waiting (not yet handed to a worker) in each queue: 0 for a queue RabbitMQ
        does not have; None where the transport cannot tell."""
        depths: dict[str, int | None] = dict.fromkeys(queues)
        if not queues:
            return depths
        with self._lock:
            try:
                if self._redis_url is not None:
                    client = self._redis_client()
                    for queue in queues:
                        depths[queue] = redis_queue_depth(client, queue)
                elif self._amqp:
                    for queue in queues:
                        depth = self._ensure_link().queue_depth(queue)
                        if depth is None:  # no such queue: the broker closed the channel
                            self._reset()
                        depths[queue] = depth or 0
            except Exception:
                self._reset()
                raise
        return depths

    def _reset(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing a broken Redis connection failed", exc_info=True)
        link, self._link = self._link, None
        if link is not None:
            link.close()
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing a broken broker connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._reset()
