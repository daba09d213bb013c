"""Tracked tasks: every run leaves a true record in `executions`.

Use the decorator::

    @tracked_task(name="reports.nightly", bind=True, max_retries=3)
    def nightly(self, day: str, execution_id: str | None = None) -> dict: ...

or the base class: `@app.task(base=TrackedTask, ...)`. Plain and `async def` functions both
work; an async body runs on the process's event loop and may declare a `session`
parameter to get an `AsyncSession` from the process's pooled engine.

A run claims its row with one conditional statement (pending/queued/retrying -> running; a
call made outside the beat creates its row, trigger `direct`); a duplicate delivery of a
running or finished execution runs nothing. The outcome is written with one statement:
success, failed, retrying, timeout, revoked, with duration_ms, errors and progress.

The writes themselves are in `scheduler.worker.outcome`, the adaptation of the body's
signature in `scheduler.worker.signature`; the Celery signals that record outcomes learnt
outside the run are connected by `scheduler.worker.signals.connect_signals()`, called when a
tracked task is declared (and by `config.celery`).
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from celery import Task, shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded

from config.settings import get_settings
from scheduler.core.bounds import plain, storable
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import DatabaseUnreachable
from scheduler.observability import metrics
from scheduler.runtime import clock
from scheduler.runtime.db import get_runtime
from scheduler.store.runs import RunStore
from scheduler.worker.outcome import (
    OUTCOME_LANE,
    bookkeeping,
    error_fields,
    json_text,
    lane,
    now,
    on_run_path,
    summarize,
    worker_id,
    write_outcome,
)
from scheduler.worker.signals import connect_signals
from scheduler.worker.signature import accepts_execution_id, adapt_task_class
from scheduler.worker.successes import process_batch

REQUEUE_DELAY_S = 2.0
"""How long a message waits before it is tried again when the database is unreachable."""
RETRY_WAIT_KWARG = "_scheduler_retry_wait"
RETRY_WAIT_S = 0.5
RETRY_WAITS = 20
"""A retry delivered while its previous attempt still records `retrying` is put back this
often (~10 s), then taken for a duplicate."""
P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass
class _RunState:
    started: float
    progress: dict[str, int] | None = None
    progress_written_at: float | None = None
    """monotonic time of the last progress write; None until the first one"""
    progress_dirty: bool = False


class TrackedTask(Task):  # type: ignore[misc]
    """A Celery task base class that records each run in `executions`."""

    abstract = True
    records_executions = True
    """What the worker's signal handlers look for (`scheduler.worker.signals`)."""
    _runs: dict[str, _RunState]
    _runs_lock = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Adapt the `run` of every task class built on this base (see `signature`), and
        connect the signals that record outcomes learnt outside a run: any app with a tracked
        task gets them, whether or not it is `config.celery`'s (connecting twice is a no-op)."""
        super().__init_subclass__(**kwargs)
        adapt_task_class(cls)
        connect_signals()

    # --- Celery hooks ------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        execution_id = request.id or str(uuid.uuid4())
        waits = int(kwargs.pop(RETRY_WAIT_KWARG, 0) or 0)
        sent_kwargs = dict(kwargs)
        kwargs = self._prepare_kwargs(execution_id, kwargs)
        settings = get_settings()
        runtime = get_runtime()
        delivery = getattr(request, "delivery_info", None) or {}
        reclaim = bool(self.acks_late and delivery.get("redelivered"))
        clock.CLOCK.keep_synced(runtime, settings.clock_resync_s)
        try:
            attempt = on_run_path(
                RunStore.claim_execution,
                execution_id,
                task=self.name,
                args_json=json_text(list(args)),
                kwargs_json=json_text({**kwargs, "execution_id": execution_id}),
                worker=worker_id(None if request.is_eager else request.hostname),
                now=now(),
                reclaim_running=reclaim,
                parent_id=getattr(request, "parent_id", None),
                root_id=getattr(request, "root_id", None),
                kind="claims",
            )
        except DatabaseUnreachable as exc:
            if request.is_eager:
                raise
            # The run cannot be recorded: put the message back (same task id, a little later)
            # rather than run unrecorded or drop it, so a database outage loses no run.
            log.warning(
                "database unreachable (%s): execution %s requeued in %.0f s",
                exc,
                execution_id,
                REQUEUE_DELAY_S,
            )
            self.app.send_task(
                self.name,
                args=args,
                kwargs=sent_kwargs,
                task_id=execution_id,
                countdown=REQUEUE_DELAY_S,
                queue=delivery.get("routing_key") or None,
            )
            return None
        if attempt is None:
            owner = runtime.run(bookkeeping(RunStore.execution_task, execution_id))
            if owner is not None and owner != self.name:
                log.error(
                    "delivery refused: execution %s is a run of task %r, the message is for %r",
                    execution_id,
                    plain(owner),
                    plain(self.name),
                )
                return None
            if request.retries and not request.is_eager and waits < RETRY_WAITS:
                # A retry's message is sent before its previous attempt has written
                # `retrying`: on a concurrent pool it can arrive first. Look again shortly.
                self.app.send_task(
                    self.name,
                    args=args,
                    kwargs={**sent_kwargs, RETRY_WAIT_KWARG: waits + 1},
                    task_id=execution_id,
                    countdown=RETRY_WAIT_S,
                    retries=request.retries,
                    queue=delivery.get("routing_key") or None,
                )
                return None
            log.warning("execution %s already ran or is running: duplicate skipped", execution_id)
            return None
        metrics.run_started(self.name, attempt)
        state = _RunState(started=time.perf_counter())
        self._state_map()[execution_id] = state
        try:
            result = self.run(*args, **kwargs)
            if inspect.isawaitable(result):
                result = runtime.run(cast(Coroutine[Any, Any, Any], result))
        except Retry as exc:
            self._finish(execution_id, ExecutionStatus.RETRYING, state, error=exc.exc or exc)
            raise
        except SoftTimeLimitExceeded as exc:
            self._finish(execution_id, ExecutionStatus.TIMEOUT, state, error=exc)
            raise
        except Exception as exc:
            self._finish(execution_id, ExecutionStatus.FAILED, state, error=exc)
            raise
        except BaseException as exc:
            limit = green_time_limit(exc)
            if limit is not None:
                self._finish(execution_id, ExecutionStatus.TIMEOUT, state, error=limit)
            else:
                self._finish(execution_id, ExecutionStatus.FAILED, state, error=exc)
            raise
        self._finish(
            execution_id,
            ExecutionStatus.SUCCESS,
            state,
            summary=summarize(result, settings.worker_result_summary_max),
        )
        return result

    # --- API for task bodies -----------------------------------------------------------

    def update_progress(self, current: int, total: int) -> None:
        """Record progress; writes are throttled, the last one always lands at the end."""
        execution_id = self.request.id
        state = self._state_map().get(execution_id) if execution_id else None
        if state is None:
            return
        percent = int(current * 100 / total) if total > 0 else 0
        state.progress = {
            "current": int(current),
            "total": int(total),
            "percent": max(0, min(100, percent)),
        }
        state.progress_dirty = True
        now = time.monotonic()
        throttle_s = get_settings().worker_progress_throttle_s
        last = state.progress_written_at
        if last is None or now - last >= throttle_s:
            state.progress_written_at = now
            state.progress_dirty = False
            try:
                on_run_path(
                    RunStore.record_progress,
                    execution_id,
                    json.dumps(state.progress),
                    kind="progress",
                )
            except DatabaseUnreachable as exc:  # the final value is written with the outcome
                log.warning("progress of execution %s not written: %s", execution_id, exc)

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kw: Any
    ) -> None:
        """The seed's `update_state(state='PROGRESS', meta={current, total})` persists progress."""
        if state == "PROGRESS" and isinstance(meta, dict) and (task_id in (None, self.request.id)):
            current, total = meta.get("current"), meta.get("total")
            if isinstance(current, int) and isinstance(total, int):
                self.update_progress(current, total)
        if not getattr(
            self.backend, "is_disabled", type(self.backend).__name__ == "DisabledBackend"
        ):
            super().update_state(task_id, state, meta, **kw)

    # --- internals ---------------------------------------------------------------------

    def _state_map(self) -> dict[str, _RunState]:
        with self._runs_lock:
            if "_runs" not in self.__dict__:
                self._runs = {}
            return self._runs

    def _prepare_kwargs(self, execution_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        accepts = accepts_execution_id(self.run)
        kwargs = dict(kwargs)
        kwargs.pop("execution_id", None)
        if accepts:
            kwargs["execution_id"] = execution_id
        return kwargs

    def _finish(
        self,
        execution_id: str,
        status: ExecutionStatus,
        state: _RunState,
        *,
        summary: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._state_map().pop(execution_id, None)
        duration_ms = int((time.perf_counter() - state.started) * 1000)
        metrics.run_finished(self.name, status.value, time.perf_counter() - state.started)
        outcome: dict[str, Any] = {
            "status_id": status.id,
            "duration_ms": duration_ms,
            "completed_at": None if status is ExecutionStatus.RETRYING else now(),
            "result_summary": storable(summary),
            "progress_json": None if state.progress is None else json.dumps(state.progress),
        }
        if error is not None:
            outcome.update(error_fields(error))
        runtime = get_runtime()
        if status is ExecutionStatus.SUCCESS and not self.request.is_eager:
            # Nothing waits on a success: the worker takes its next message while the row is
            # written, with the other successes of the moment (`successes`). Other outcomes
            # are written before Celery acts on them (a retry's next attempt must find the
            # row `retrying`); eager calls return with the row written.
            process_batch().add(runtime, execution_id, outcome)
        else:
            runtime.run(write_outcome(execution_id, outcome, lane(OUTCOME_LANE)))


def green_time_limit(exc: BaseException) -> TimeLimitExceeded | None:
    """The gevent pool enforces a hard time limit by raising `gevent.Timeout` inside the run
    (prefork kills the child instead): the same limit, recorded the same way, `timeout` with
    `TimeLimitExceeded`. None for anything else."""
    gevent = sys.modules.get("gevent")
    if gevent is None or not isinstance(exc, gevent.Timeout):
        return None
    limit = TimeLimitExceeded(f"hard time limit ({exc.seconds} s) exceeded")
    limit.__cause__ = exc
    return limit


def tracked_task(
    *, name: str | None = None, app: Any = None, **options: Any
) -> Callable[[Callable[P, R]], Any]:
    """Register `fn` as a tracked Celery task; accepts every `@app.task` option."""

    def decorate(fn: Callable[P, R]) -> Any:
        register = app.task if app is not None else shared_task
        return register(base=TrackedTask, name=name, **options)(fn)

    return decorate
