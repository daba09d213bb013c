"""A schedule's `options`: what its messages are sent with, checked before any run is made.

One check serves schedule validation (CLI, YAML, API, imports) and the beat (raw SQL rows):
a value the publisher cannot send would otherwise fail the publish of every run in the same
batch, again at each retry.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from scheduler.core.domain import LONGEST_SECONDS
from scheduler.core.exceptions import InvalidScheduleError

OPTION_NAMES = (
    "queue",
    "priority",
    "expires",
    "headers",
    "time_limit",
    "soft_time_limit",
    "queued_timeout_s",
    "queued_lost_after_s",
    "retention_days",
)
"""`queued_timeout_s` / `queued_lost_after_s` are not sent: they bound how long the beat lets a
run sit `queued` unclaimed (see scheduler.beat.reaper). Nor is `retention_days`: how long this
schedule's finished runs are kept, by outcome (`{"success": 30}`; see scheduler.store.retention)."""
RETENTION_CLASSES = ("success", "failure", "skipped")
PROTOCOL_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
    }
)
"""Celery protocol 2 headers: extra `headers` may not replace them."""


def _seconds(value: Any, *, allow_zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (value >= 0 if allow_zero else value > 0) and value <= LONGEST_SECONDS


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def check_options(options: dict[str, Any]) -> None:
    """Raise InvalidScheduleError (one line) unless every option is one the publisher sends."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise InvalidScheduleError(
            f"unknown option(s) {', '.join(map(repr, unknown))}: use {', '.join(OPTION_NAMES)}"
        )
    queue = options.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        raise InvalidScheduleError("option queue must be a queue name")
    priority = options.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255
    ):
        raise InvalidScheduleError("option priority must be a whole number from 0 to 255")
    expires = options.get("expires")
    if expires is not None and not (_seconds(expires, allow_zero=True) or _iso(expires)):
        raise InvalidScheduleError(
            "option expires must be seconds (at most ten years) or an ISO 8601 time"
        )
    for name in ("time_limit", "soft_time_limit", "queued_timeout_s", "queued_lost_after_s"):
        limit = options.get(name)
        if limit is not None and not _seconds(limit, allow_zero=False):
            raise InvalidScheduleError(f"option {name} must be seconds above 0, at most ten years")
    headers = options.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            raise InvalidScheduleError("option headers must be a JSON object")
        taken = sorted(PROTOCOL_HEADERS & set(headers))
        if taken:
            raise InvalidScheduleError(
                f"option headers may not set Celery's own header(s) {', '.join(taken)}"
            )
    retention = options.get("retention_days")
    if retention is not None:
        _check_retention(retention)


def _check_retention(retention: Any) -> None:
    if not isinstance(retention, dict) or not retention:
        raise InvalidScheduleError(
            'option retention_days must be an object like {"success": 30, "failure": 365}'
        )
    unknown = sorted(set(retention) - set(RETENTION_CLASSES))
    if unknown:
        raise InvalidScheduleError(
            f"option retention_days: unknown outcome(s) {', '.join(map(repr, unknown))}:"
            f" use {', '.join(RETENTION_CLASSES)}"
        )
    for name, days in retention.items():
        if not _seconds(days, allow_zero=False) or days > 36_500:
            raise InvalidScheduleError(
                f"option retention_days.{name} must be a number of days above 0"
            )
