"""Status ids for the SQL tests write by hand: named from `scheduler.core.domain`, never typed
as digits."""

from __future__ import annotations

from scheduler.core.domain import ExecutionStatus

PENDING = ExecutionStatus.PENDING.id
QUEUED = ExecutionStatus.QUEUED.id
RUNNING = ExecutionStatus.RUNNING.id
SUCCESS = ExecutionStatus.SUCCESS.id
FAILED = ExecutionStatus.FAILED.id
UNFINISHED = ", ".join(
    str(s.id)
    for s in (
        ExecutionStatus.PENDING,
        ExecutionStatus.QUEUED,
        ExecutionStatus.RUNNING,
        ExecutionStatus.RETRYING,
    )
)
"""The ids of pending, queued, running and retrying, for `status_id IN (...)`."""
