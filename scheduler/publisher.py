"""Publishing execution rows as Celery task messages, in bulk, over one held connection.

Messages are Celery protocol 2, JSON, with `task_id = execution_id`. They go straight to the
destination queue (kombu's anonymous exchange: routing key = queue name), so a Redis broker
gets one pipelined batch of LPUSHes instead of a round trip per message, and workers
consume them exactly as if `send_task` had sent them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
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


class Publisher:
    """One held broker connection and producer; reconnects after a failure."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._producer: Any = None
        self._lock = threading.Lock()

    def _ensure(self) -> Any:
        if self._producer is None:
            connection = self.app.connection_for_write()
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            producer_cls: Any = messaging.Producer
            self._producer = producer_cls(connection.default_channel, serializer="json")
        return self._producer

    def _queue_for(self, task: str, options: dict[str, Any]) -> str:
        queue = options.get("queue")
        if queue:
            return str(queue)
        registered = self.app.tasks.get(task)
        own = getattr(registered, "queue", None) if registered is not None else None
        return str(own or self.app.conf.task_default_queue)

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish all `messages` or raise; a failure leaves the connection to be rebuilt."""
        if not messages:
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
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                log.debug("closing a broken broker connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._reset()
