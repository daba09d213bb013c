"""Domain values shared by every layer: enums and frozen dataclasses, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType


class ExecutionStatus(enum.StrEnum):
    """Status codes of `execution_statuses`; ids are fixed by the initial migration."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REVOKED = "revoked"
    SKIPPED = "skipped"
    MISSED = "missed"
    LOST = "lost"

    @property
    def id(self) -> int:
        return _STATUS_IDS[self]

    @property
    def is_terminal(self) -> bool:
        return self not in NON_TERMINAL

    @property
    def label(self) -> str:
        return _STATUS_NAMES[self]

    @classmethod
    def from_id(cls, status_id: int) -> ExecutionStatus:
        return _STATUS_BY_ID[status_id]


_STATUS_IDS: dict[ExecutionStatus, int] = {s: i for i, s in enumerate(ExecutionStatus, start=1)}
STATUS_IDS: Mapping[ExecutionStatus, int] = MappingProxyType(_STATUS_IDS)
"""Status -> id, for hot loops (a dict lookup costs a fraction of the `id` property)."""
_STATUS_BY_ID: dict[int, ExecutionStatus] = {i: s for s, i in _STATUS_IDS.items()}
_STATUS_NAMES: dict[ExecutionStatus, str] = {
    ExecutionStatus.PENDING: "Pending (written, not yet confirmed on the broker)",
    ExecutionStatus.QUEUED: "Queued",
    ExecutionStatus.RUNNING: "Running",
    ExecutionStatus.RETRYING: "Retrying",
    ExecutionStatus.SUCCESS: "Succeeded",
    ExecutionStatus.FAILED: "Failed",
    ExecutionStatus.TIMEOUT: "Timed out",
    ExecutionStatus.REVOKED: "Revoked",
    ExecutionStatus.SKIPPED: "Skipped (overlap policy)",
    ExecutionStatus.MISSED: "Missed (misfire policy)",
    ExecutionStatus.LOST: "Lost (worker died or never finished)",
}
NON_TERMINAL: frozenset[ExecutionStatus] = frozenset(
    {
        ExecutionStatus.PENDING,
        ExecutionStatus.QUEUED,
        ExecutionStatus.RUNNING,
        ExecutionStatus.RETRYING,
    }
)


class Trigger(enum.StrEnum):
    """Why an execution row exists."""

    SCHEDULE = "schedule"
    CATCHUP = "catchup"
    MANUAL = "manual"
    DIRECT = "direct"
    BACKFILL = "backfill"
    RETRY = "retry"


class MisfirePolicy(enum.StrEnum):
    RUN_ONCE = "run_once"
    SKIP = "skip"
    RUN_ALL = "run_all"


class OverlapPolicy(enum.StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"


LONGEST_SECONDS = 10 * 365 * 86400
"""The longest interval, `expires` or time limit a schedule may give: ten years."""

EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)
"""A schedule's instants stay within what Python's datetime holds (years 1 to 9999, never
infinite), with a day of margin for time zone conversion; the database enforces it too."""
