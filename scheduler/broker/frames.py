"""A run's task message and its wire forms: Celery protocol 2, JSON, `task_id` the execution id.

Built here byte for byte as kombu would send them (the Redis transport's JSON envelope, an
AMQP publish frame; on AMQP without the headers that restate a worker's defaults), so the
publisher pushes ready bytes and workers consume them exactly as if `send_task` had sent
them. Pure: the instant a message is stamped with is passed in.
"""

from __future__ import annotations

import base64
import functools
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scheduler.broker.connections import EncodedMessage, Route, encode_properties, encode_publish


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
    amqp_message: EncodedMessage | None = None
    """The encoded AMQP message, built ahead by `Publisher.prepare` (RabbitMQ)."""


def delivery_tag() -> str:
    """A unique tag in uuid4's form, as kombu gives each message on Redis (its key among the
    unacked messages). From `random`, reseeded in every forked process, not from `os.urandom`:
    a system call per message was a tenth of a 10k burst's publishing."""
    h = f"{random.getrandbits(128) & _TAG_MASK | _TAG_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_TAG_MASK = ~((0xF << 76) | (0x3 << 62))
_TAG_BITS = (0x4 << 76) | (0x2 << 62)
"""Version 4 and the RFC 4122 variant, as `uuid.uuid4()` sets them."""


_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def instant_after(now: datetime, seconds: Any) -> Any:
    """`seconds` after `now` (the database clock's): None for none, a given instant as is."""
    if seconds is None or seconds == 0:
        return None
    if isinstance(seconds, (str, datetime)):
        return seconds
    return now + timedelta(seconds=float(seconds))


def _iso_after(now: datetime, seconds: Any) -> str | None:
    instant = instant_after(now, seconds)
    return instant.isoformat() if isinstance(instant, datetime) else instant


def task_headers(message: OutgoingMessage, origin: str, now: datetime) -> dict[str, Any]:
    """Celery protocol 2 headers of one task message (a schedule's extra headers on top)."""
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
        "ignore_result": None,  # as send_task: the task's own setting
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    extra = options.get("headers")
    if isinstance(extra, dict):
        headers.update(extra)
    return headers


ABSENT_MEANS: dict[str, Any] = {
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "parent_id": None,
    "ignore_result": None,
    "retries": 0,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
"""Headers a Celery worker reads with these values when the message lacks them (its
`Request` and the task's `Context` default to them)."""


def amqp_headers(message: OutgoingMessage, origin: str, now: datetime) -> dict[str, Any]:
    """`task_headers` less the entries that only restate `ABSENT_MEANS`: RabbitMQ decodes
    every entry of a persistent message's header table, and these eleven were a fifth of its
    CPU per message in a 10k burst (see docs/BENCHMARKS.md), for a worker that reads the
    same values either way."""
    return {
        key: value
        for key, value in task_headers(message, origin, now).items()
        if key not in ABSENT_MEANS or value != ABSENT_MEANS[key]
    }


def _body(message: OutgoingMessage) -> bytes:
    return json.dumps([message.args, message.kwargs, _EMBED]).encode()


def amqp_message(
    message: OutgoingMessage, route: Route, origin: str, now: datetime
) -> EncodedMessage:
    """One task message as kombu's py-amqp transport would send it, without the headers that
    restate a worker's defaults (`amqp_headers`); `mandatory`: a message no queue takes is
    returned, not dropped."""
    properties = encode_properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=amqp_headers(message, origin, now),
        delivery_mode=route.delivery_mode,
        priority=int(message.options.get("priority") or 0),
        correlation_id=message.execution_id,
        reply_to="",
    )
    return encode_publish(route.exchange, route.routing_key, properties, _body(message))


def redis_payload(message: OutgoingMessage, queue: str, origin: str, now: datetime) -> str:
    """One task message in kombu's Redis format: Celery protocol 2, JSON body, base64.

    The JSON of `task_headers` and of kombu's envelope, assembled from pieces: the parts that
    are the same for every message of a task and a queue are encoded once (`_constant`), so a
    message costs the JSON of its own values only (half the time of one `json.dumps` of the
    whole document, on the 10k-message paths of a burst)."""
    options = message.options
    extra = options.get("headers")
    execution_id = json.dumps(message.execution_id)
    return "".join(
        (
            '{"body": "',
            base64.b64encode(_body(message)).decode(),
            '", "content-encoding": "utf-8", "content-type": "application/json",'
            ' "headers": {"lang": "py", "task": ',
            _constant(message.task),
            ', "id": ',
            execution_id,
            ', "shadow": null, "eta": ',
            _json_or_null(_iso_after(now, message.countdown_s)),
            ', "expires": ',
            _json_or_null(_iso_after(now, options.get("expires"))),
            ', "group": null, "group_index": null, "retries": 0, "timelimit": ',
            json.dumps([options.get("time_limit"), options.get("soft_time_limit")]),
            ', "root_id": ',
            execution_id,
            ', "parent_id": null, "argsrepr": ',
            json.dumps(repr(message.args)),
            ', "kwargsrepr": ',
            json.dumps(repr(message.kwargs)),
            ', "origin": ',
            _constant(origin),
            ', "ignore_result": null, "replaced_task_nesting": 0, "stamped_headers": null,'
            ' "stamps": {}',
            ", " + json.dumps(extra)[1:-1] if isinstance(extra, dict) and extra else "",
            '}, "properties": {"correlation_id": ',
            execution_id,
            ', "reply_to": "", "delivery_mode": 2, "delivery_info": {"exchange": "",'
            ' "routing_key": ',
            _constant(queue),
            '}, "priority": 0, "body_encoding": "base64", "delivery_tag": "',
            delivery_tag(),
            '"}}',
        )
    )


@functools.lru_cache(maxsize=1024)
def _constant(text: str) -> str:
    """The JSON of a task name, queue or origin (a handful per process)."""
    return json.dumps(text)


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else json.dumps(value)
