"""The worker's guard against malformed broker messages.

Celery's consumer lets a message whose body is not its `[args, kwargs, embed]` triple, whose
entries have the wrong types, or (on Redis) whose body is not base64 escape as an
"Unrecoverable error": the worker stops, and a redelivered message stops every restart
again. Workers of this project (`config.celery:app` sets `worker_consumer` to
`GuardedConsumer`) check each task message before Celery reads it: a malformed one is
logged with its id and rejected without requeue (the broker dead-letters it where a
dead-letter exchange is configured, else drops it), and the worker keeps consuming.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery.worker.consumer.consumer import Consumer

from scheduler.core.bounds import plain
from scheduler.runtime.urls import redact_text

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4_000_000
"""Largest task message body a worker accepts (a schedule's JSON is at most 1 MB)."""
_BROKEN = "_scheduler_malformed"


def message_problem(message: Any) -> str | None:
    """Why `message` cannot be a Celery protocol 2 task message, or None when it can (or
    when it is not protocol 2 at all: Celery's own checks handle those)."""
    broken = getattr(message, _BROKEN, None)
    if broken:
        return str(broken)
    headers = getattr(message, "headers", None)
    if not isinstance(headers, dict) or "task" not in headers:
        return None
    body = getattr(message, "body", b"")
    if isinstance(body, bytes | str) and len(body) > MAX_MESSAGE_BYTES:
        return f"body is {len(body)} bytes: at most {MAX_MESSAGE_BYTES}"
    try:
        payload = message.decode()
    except Exception as exc:
        return f"body cannot be decoded ({type(exc).__name__})"
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return "body is not Celery's [args, kwargs, embed] list"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        return "args (body entry 1) is not a list"
    if not isinstance(kwargs, dict):
        return "kwargs (body entry 2) is not an object"
    if embed is not None and not isinstance(embed, dict):
        return "embed (body entry 3) is not an object"
    return None


def _describe(message: Any) -> str:
    headers = getattr(message, "headers", None)
    if not isinstance(headers, dict):
        return "a message"
    return f"message {headers.get('id')!r} (task {headers.get('task')!r})"


def reject(message: Any, problem: str) -> None:
    """Log `message` and take it off the queue for good (dead-lettered where configured)."""
    log.error("discarded malformed %s: %s", plain(redact_text(_describe(message))), plain(problem))
    try:
        message.reject(requeue=False)
    except Exception:
        log.exception("could not reject the malformed message")


def guard_message_class(channel: Any) -> None:
    """Make a virtual channel (Redis) build a message whose body cannot be decoded as a
    marked, empty message instead of raising inside the consumer loop."""
    original = getattr(channel, "Message", None)
    if original is None or getattr(original, "_scheduler_guarded", False):
        return

    class GuardedMessage(original):  # type: ignore[misc, valid-type]
        _scheduler_guarded = True

        def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
            try:
                super().__init__(payload, channel=channel, **kwargs)
                return
            except Exception as exc:
                problem = f"body cannot be read ({type(exc).__name__}: {exc})"
            safe = dict(payload) if isinstance(payload, dict) else {}
            properties = safe.get("properties")
            properties = dict(properties) if isinstance(properties, dict) else {}
            properties.setdefault("delivery_tag", str(uuid.uuid4()))
            properties.pop("body_encoding", None)
            safe.update(body="", properties=properties)
            if not isinstance(safe.get("headers"), dict):
                safe["headers"] = {}
            super().__init__(safe, channel=channel, **kwargs)
            setattr(self, _BROKEN, problem)

    channel.Message = GuardedMessage


class GuardedConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer with every task message checked first (see the module doc)."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        task_consumer = getattr(self, "task_consumer", None)
        channel = getattr(task_consumer, "channel", None)
        if channel is not None:
            guard_message_class(channel)
        handler: Callable[[Any], Any] = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            problem = message_problem(message)
            if problem is not None:
                reject(message, problem)
                return None
            try:
                return handler(message)
            except Exception as exc:
                reject(message, f"{type(exc).__name__}: {exc}")
                return None

        return on_task_received
