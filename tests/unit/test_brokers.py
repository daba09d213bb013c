"""Pure parts of publishing and recovery: AMQP frames byte for byte as py-amqp writes them,
and the verdict on unclaimed `queued` runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import amqp
import pytest

from scheduler.beat.reaper import QueuedRun, judge_queued
from scheduler.broker.connections import encode_properties, encode_publish, frames

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "headers",
    [
        {"lang": "py", "id": "x", "eta": None, "retries": 0, "timelimit": [None, 5]},
        {"big": 2**40, "neg": -3, "f": 1.5, "flag": False, "nested": {"a": [1, "b"]}},
        {"text": "é ü ✓", "empty": "", "stamps": {}},
    ],
)
def test_properties_are_encoded_as_py_amqp_encodes_them(headers: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "priority": 7,
        "correlation_id": "0b7f6a8e",
        "reply_to": "",
    }
    expected = amqp.Message(b"{}", application_headers=headers, **fields)._serialize_properties()
    assert encode_properties(headers=headers, **fields) == expected
    assert encode_properties(headers=headers, **fields) == expected  # cached items too


def test_a_body_over_the_frame_size_is_split_into_body_frames() -> None:
    message = encode_publish("", "q", encode_properties(
        content_type="application/json", content_encoding="utf-8", headers={},
        delivery_mode=2, priority=0, correlation_id="c", reply_to="",
    ), b"x" * 25)  # fmt: skip
    parts = frames(message, channel_id=3, frame_max=18)  # 10 bytes of body per frame
    bodies = [parts[i + 1] for i in range(6, len(parts), 3)]
    assert bodies == [b"x" * 10, b"x" * 10, b"x" * 5]
    assert all(p == b"\xce" for p in parts[2::3])


def test_a_message_framed_ahead_is_reframed_for_another_channel() -> None:
    message = encode_publish("", "q", encode_properties(
        content_type="application/json", content_encoding="utf-8", headers={"id": "x"},
        delivery_mode=2, priority=0, correlation_id="c", reply_to="",
    ), b"[[], {}, {}]")  # fmt: skip
    ahead = message.framed(1, 131072)
    assert ahead == b"".join(frames(message, channel_id=1, frame_max=131072))
    assert message.framed(1, 131072) is ahead  # built once
    again = message.framed(2, 131072)  # after a reconnect on another channel
    assert again == b"".join(frames(message, channel_id=2, frame_max=131072))
    assert again != ahead


def _run(queue: str, queued_s_ago: float, created_s_ago: float) -> QueuedRun:
    return QueuedRun(
        id=uuid.uuid4(),
        queue=queue,
        queued_at=NOW - timedelta(seconds=queued_s_ago),
        created_at=NOW - timedelta(seconds=created_s_ago),
        timeout_s=300,
        lost_after_s=3600,
    )


def test_unclaimed_runs_are_republished_lost_or_left_waiting_by_queue_depth() -> None:
    early = _run("empty", 100, 100)
    due = _run("empty", 400, 400)
    old = _run("empty", 400, 4000)
    backlog = _run("busy", 10_000, 100_000)
    unknown = _run("unknown", 10_000, 100_000)
    verdict = judge_queued(
        [early, due, old, backlog, unknown],
        {"empty": 0, "busy": 12, "unknown": None},
        now=NOW,
    )
    assert verdict.republish == [due.id]
    assert verdict.lost == [old.id]
    assert verdict.waiting == 2
