"""Schedule options: what the publisher can send is accepted, anything else is one line."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler.broker.frames import OutgoingMessage, redis_payload, task_headers
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.options import PROTOCOL_HEADERS, check_options


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"queue": "reports"},
        {"priority": 0},
        {"priority": 255},
        {"expires": 0},
        {"expires": 30.5},
        {"expires": "2027-01-01T00:00:00Z"},
        {"time_limit": 60, "soft_time_limit": 50},
        {"headers": {"tenant": "acme"}},
    ],
)
def test_accepted(options: dict[str, Any]) -> None:
    check_options(options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"qeue": "x"}, "unknown option.*'qeue'"),
        ({"queue": ""}, "queue must be a queue name"),
        ({"queue": 5}, "queue must be a queue name"),
        ({"priority": "high"}, "priority must be a whole number"),
        ({"priority": 256}, "priority must be a whole number"),
        ({"priority": True}, "priority must be a whole number"),
        ({"expires": "soon"}, "expires must be seconds"),
        ({"expires": -1}, "expires must be seconds"),
        ({"expires": 10**400}, "expires must be seconds"),
        ({"expires": float("inf")}, "expires must be seconds"),
        ({"time_limit": 0}, "time_limit must be seconds above 0"),
        ({"soft_time_limit": "x"}, "soft_time_limit must be seconds above 0"),
        ({"headers": "x"}, "headers must be a JSON object"),
        ({"headers": {"id": "other", "task": "t"}}, "Celery's own header.*id, task"),
    ],
)
def test_refused_in_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message) as info:
        check_options(options)
    assert "\n" not in str(info.value)


def test_the_reserved_headers_are_the_ones_the_publisher_writes() -> None:
    message = OutgoingMessage("0b7f6a8e-6c3c-4a55-9a0e-1b2c3d4e5f60", "demo.noop", [], {}, {})
    payload = json.loads(redis_payload(message, "celery", "1@host", datetime.now(UTC)))
    assert set(payload["headers"]) == PROTOCOL_HEADERS


@pytest.mark.parametrize(
    ("args", "kwargs", "options", "countdown_s"),
    [
        ([], {}, {}, 0.0),
        ([1, "two", None], {"execution_id": "x", "ü": "é\n\"'"}, {"queue": 'q"1'}, 0.0),
        ([], {}, {"expires": 30, "time_limit": 5, "soft_time_limit": 2.5}, 1.25),
        ([], {}, {"expires": "2026-12-02T10:00:00+00:00", "headers": {"tenant": "a", "n": 1}}, 0),
    ],
)
def test_the_redis_payload_carries_the_headers_of_the_amqp_path(
    args: list[Any], kwargs: dict[str, Any], options: dict[str, Any], countdown_s: float
) -> None:
    now = datetime.now(UTC)
    message = OutgoingMessage(
        "0b7f6a8e-6c3c-4a55-9a0e-1b2c3d4e5f60", "demo.noop", args, kwargs, options, countdown_s
    )
    payload = json.loads(redis_payload(message, 'q"1', "1@host", now))
    assert payload["headers"] == task_headers(message, "1@host", now)
    assert json.loads(base64.b64decode(payload["body"])) == [
        args,
        kwargs,
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    tag = payload["properties"].pop("delivery_tag")
    assert uuid.UUID(tag).version == 4
    assert payload["properties"] == {
        "correlation_id": message.execution_id,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": 'q"1'},
        "priority": 0,
        "body_encoding": "base64",
    }
    assert {k: v for k, v in payload.items() if k not in ("headers", "body", "properties")} == {
        "content-encoding": "utf-8",
        "content-type": "application/json",
    }
