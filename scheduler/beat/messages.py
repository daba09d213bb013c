"""A run as the beat writes and sends it: its `executions` values, its schedule's update, its
message. One place for each, shared by the pass, the outbox and manual runs."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from scheduler.broker.frames import OutgoingMessage
from scheduler.core.domain import STATUS_IDS
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.options import check_options
from scheduler.core.planner import PlannedRun, ScheduleUpdate

log = logging.getLogger(__name__)


def execution_values(run: PlannedRun, now: datetime) -> dict[str, Any]:
    return {
        "id": run.id,
        "schedule_id": run.schedule_id,
        "task": run.task,
        "args": run.args,
        "kwargs": run.kwargs,
        "trigger": str.__str__(run.trigger),  # its text, without the enum's slow `.value`
        "scheduled_for": run.scheduled_for,
        "status_id": STATUS_IDS[run.status],
        "created_at": now,
        "completed_at": None if run.fires else now,
    }


def update_values(update: ScheduleUpdate, runs_added: int) -> dict[str, Any]:
    """`runs_added` counts the runs actually inserted (a slot another beat took is not one)."""
    return {
        "runs_added": runs_added,
        "id": update.id,
        "next_run_at": update.next_run_at,
        "last_run_at": update.last_run_at,
        "enabled": update.enabled,
        "last_error": update.last_error,
    }


def sendable_options(options: Any, what: str, execution_id: object) -> dict[str, Any]:
    """A schedule's options as they are now, or none when edited since into ones that cannot
    be sent: the run still goes (`what` and `execution_id` name it in the warning)."""
    options = options if isinstance(options, dict) else {}
    try:
        check_options(options)
    except InvalidScheduleError as exc:
        log.warning("%s %s goes out without its schedule's options: %s", what, execution_id, exc)
        options = {}
    return dict(options)


def row_message(row: dict[str, Any]) -> OutgoingMessage:
    """The message of a run read back from `executions` (joined with its schedule's options;
    options that cannot be sent are left out, so this run still goes and does not hold back
    the others published with it)."""
    return OutgoingMessage(
        execution_id=str(row["id"]),
        task=row["task"],
        args=list(row["args"] or []),
        kwargs=dict(row["kwargs"] or {}),
        options=sendable_options(row["options"], "run", row["id"]),
    )


def run_message(run: PlannedRun) -> OutgoingMessage:
    return OutgoingMessage(
        execution_id=str(run.id),
        task=run.task,
        args=run.args,
        kwargs=run.kwargs,
        options=run.options,
        countdown_s=run.countdown_s,
    )
