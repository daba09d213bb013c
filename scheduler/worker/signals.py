"""The worker's Celery signals, connected by `connect_signals()` where the app is configured.

A worker process opens its engine and loop after fork and closes them at exit; its main
process records the outcomes a run never saw (hard time limit, dead child, revoke).
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.exceptions import TimeLimitExceeded, WorkerLostError

from scheduler.core.domain import ExecutionStatus
from scheduler.observability import metrics
from scheduler.runtime.db import close_runtime, get_runtime
from scheduler.worker.outcome import write_outside_run


def connect_signals() -> None:
    """Connect the tracked tasks' handlers to Celery's signals (idempotent)."""
    signals.worker_process_init.connect(_open_runtime, weak=False, dispatch_uid="scheduler-open")
    signals.worker_process_shutdown.connect(
        _close_runtime, weak=False, dispatch_uid="scheduler-close-child"
    )
    # solo and threads pools run tasks in the main process: its outcome writes land before exit
    signals.worker_shutdown.connect(_close_runtime, weak=False, dispatch_uid="scheduler-close")
    signals.task_revoked.connect(_record_revoked, weak=False, dispatch_uid="scheduler-revoked")
    signals.task_failure.connect(
        _record_lost_or_timeout, weak=False, dispatch_uid="scheduler-lost-or-timeout"
    )


def _open_runtime(**_: Any) -> None:
    """One engine and loop per worker process, made after fork."""
    get_runtime()


def _close_runtime(**_: Any) -> None:
    close_runtime()


def _record_lost_or_timeout(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    """Failures the run itself never saw, learnt in the worker's main process: a hard time
    limit (the child was killed) or a child that died (SIGKILL, OOM)."""
    if not task_id or not _tracked(sender):
        return
    metrics.run_ended_outside(sender.name, exception)
    if isinstance(exception, TimeLimitExceeded):
        write_outside_run(task_id, ExecutionStatus.TIMEOUT, exception)
    elif isinstance(exception, WorkerLostError):
        write_outside_run(task_id, ExecutionStatus.LOST, exception)


def _record_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    task = sender
    task_id = getattr(request, "id", None)
    if task_id and _tracked(task):
        write_outside_run(task_id, ExecutionStatus.REVOKED, None)


def _tracked(task: Any) -> bool:
    """A task built on `TrackedTask` (told by its marker: this module is imported by it)."""
    return bool(getattr(task, "records_executions", False))
