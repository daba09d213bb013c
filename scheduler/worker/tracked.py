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
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import socket
import sys
import threading
import time
import traceback as tb
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar, cast

import asyncpg
from celery import Task, shared_task, signals
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from sqlalchemy import exc as sa_exc

from config.settings import get_settings
from scheduler.core.bounds import plain, storable, storable_json_text
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import DatabaseUnreachable
from scheduler.observability import metrics
from scheduler.runtime import clock
from scheduler.runtime.db import close_runtime, get_runtime
from scheduler.store.runs import RunStore
from scheduler.worker import followup

REQUEUE_DELAY_S = 2.0
"""How long a message waits before it is tried again when the database is unreachable."""
OUTCOME_LANE = "outcomes"
LANES = 3
"""Held connections per kind of run-path write (claims, outcomes) in one process: the runs of
a threads, gevent or eventlet pool commit side by side (PostgreSQL flushes their commits
together) instead of queueing behind one connection. 2 x 3 of the engine's 10 connections."""
RETRY_WAIT_KWARG = "_scheduler_retry_wait"
RETRY_WAIT_S = 0.5
RETRY_WAITS = 20
"""A retry delivered while its previous attempt still records `retrying` is put back this
often (~10 s), then taken for a duplicate."""
FINISH_ATTEMPTS = 60
FINISH_RETRY_S = 0.5
"""A run's outcome is retried for up to ~30 s while the database is unreachable."""
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InterfaceError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
)
"""What "the database cannot be reached right now" looks like, at any depth of the chain."""


def unreachable(exc: BaseException) -> bool:
    """True when `exc`, or an error it wraps (SQLAlchemy wraps asyncpg's "the database system
    is starting up" in a plain DBAPIError), says the database cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, CONNECTION_ERRORS):
            return True
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return False


P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)


def worker_id(node: str | None = None) -> str:
    """`node:pid` of this process: the Celery node name (`name@host`) inside a worker, the
    host name elsewhere (recomputed after fork)."""
    return f"{node or socket.gethostname()}:{os.getpid()}"


def _json_text(value: Any) -> str:
    """JSON text for a jsonb column; anything not serialisable is stored as its repr. NUL
    and lone surrogates (which jsonb refuses) become U+FFFD."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(f"<not storable as JSON: {type(value).__name__}>")
    return storable_json_text(text)


def summarize(result: Any, limit: int) -> str | None:
    if result is None:
        return None
    text = result if isinstance(result, str) else json.dumps(result, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    _runs: dict[str, _RunState]
    _runs_lock = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Adapt the `run` of every task class built on this base, whether through
        `tracked_task` or `@app.task(base=TrackedTask)` (see `_adapt`)."""
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None:
            return
        unbound = isinstance(run, staticmethod)
        fn = run.__func__ if unbound else run
        if not callable(fn):
            return
        if not cls.__dict__.get("_decorated") and not inspect.iscoroutinefunction(fn):
            return  # a class-based task with a plain `run`: nothing to adapt
        adapted = _adapt(fn)
        if adapted is fn:
            return
        cls.run = staticmethod(adapted) if unbound else adapted
        app = cls.__dict__.get("app")
        if cls.__dict__.get("_decorated") and app is not None:
            # Celery built `__header__` (the argument check of apply_async) from the
            # original function: rebuild it so `execution_id` is accepted and `session`
            # is not required from callers.
            cls.__header__ = app.type_checker(adapted, bound=not unbound)

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
            attempt = runtime.run(
                _bookkeeping(
                    RunStore.claim_execution,
                    execution_id,
                    task=self.name,
                    args_json=_json_text(list(args)),
                    kwargs_json=_json_text({**kwargs, "execution_id": execution_id}),
                    worker=worker_id(None if request.is_eager else request.hostname),
                    now=_now(),
                    reclaim_running=reclaim,
                    parent_id=getattr(request, "parent_id", None),
                    root_id=getattr(request, "root_id", None),
                    lane=_lane("claims"),
                )
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
            owner = runtime.run(_bookkeeping(RunStore.execution_task, execution_id))
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
                get_runtime().run(
                    _bookkeeping(RunStore.record_progress, execution_id, json.dumps(state.progress))
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
        accepts = _accepts_execution_id(self.run)
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
            "completed_at": None if status is ExecutionStatus.RETRYING else _now(),
            "result_summary": storable(summary),
            "progress_json": None if state.progress is None else json.dumps(state.progress),
        }
        if error is not None:
            outcome.update(_error_fields(error))
        runtime = get_runtime()
        if status is ExecutionStatus.SUCCESS and not self.request.is_eager:
            # Nothing waits on a success: the worker takes its next message while the row is
            # written. Other outcomes are written before Celery acts on them (a retry's next
            # attempt must find the row `retrying`); eager calls return with the row written.
            runtime.submit(_write_outcome(execution_id, outcome, _lane(OUTCOME_LANE)))
        else:
            runtime.run(_write_outcome(execution_id, outcome, _lane(OUTCOME_LANE)))


def _lane(kind: str) -> str:
    """The held connection this thread (or green thread) writes `kind` on."""
    return f"{kind}-{threading.get_ident() % LANES}"


async def _write_outcome(
    execution_id: str, outcome: dict[str, Any], lane: str = OUTCOME_LANE
) -> None:
    """Write a run's outcome; while the database is restarting, keep trying (~30 s)."""
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            # a lane of its own: the next run's claim does not queue behind this write
            await _on_held_connection(followup.finish_run, True, execution_id, lane=lane, **outcome)
            return
        except DatabaseUnreachable as exc:
            if attempt == FINISH_ATTEMPTS:
                log.error("could not record the outcome of execution %s: %s", execution_id, exc)
                return
            await asyncio.sleep(FINISH_RETRY_S)
        except Exception as exc:
            if outcome.get("error_type") != "OutcomeNotStored":
                # whatever the texts held, the run must not stay `running`
                log.exception("outcome of execution %s refused, stored without texts", execution_id)
                outcome = {
                    **outcome,
                    "result_summary": None,
                    "progress_json": None,
                    "error_type": "OutcomeNotStored",
                    "error_message": storable(f"the outcome could not be stored: {exc}"[:4000]),
                    "traceback": None,
                }
                continue
            log.exception("could not record the outcome of execution %s", execution_id)
            return


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


def _error_fields(error: BaseException) -> dict[str, Any]:
    try:
        message = str(error)
    except Exception:
        message = ""
    try:
        trace = "".join(tb.format_exception(error))
    except Exception:
        trace = repr(error)
    return {
        "error_type": storable(type(error).__name__),
        "error_message": storable(message[:4000] or type(error).__name__),
        "traceback": storable(trace[:20000]),
    }


def _write_outside_run(task_id: str, status: ExecutionStatus, exc: BaseException | None) -> None:
    clock.CLOCK.keep_synced(get_runtime(), get_settings().clock_resync_s)
    values: dict[str, Any] = {"status_id": status.id, "completed_at": _now()}
    if exc is not None:
        values.update(_error_fields(exc))
    try:
        get_runtime().run(followup.finish_outside_run(task_id, values))
    except Exception:
        log.exception("could not record %s for execution %s", status.value, task_id)


_accepts_cache: dict[Any, bool] = {}


def _accepts_execution_id(fn: Callable[..., Any]) -> bool:
    key = getattr(fn, "__func__", fn)
    cached = _accepts_cache.get(key)
    if cached is None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        cached = "execution_id" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        _accepts_cache[key] = cached
    return cached


async def _in_transaction(
    fn: Callable[..., Coroutine[Any, Any, R]], *args: Any, **kwargs: Any
) -> R:
    """One SQLAlchemy-level repository call, a single statement, autocommitted on the
    process's held bookkeeping connection (for the rare writes outside the run path)."""
    return await _on_held_connection(fn, False, *args, **kwargs)


async def _bookkeeping(fn: Callable[..., Coroutine[Any, Any, R]], *args: Any, **kwargs: Any) -> R:
    """One run-path repository call (claim, finish, progress) on the asyncpg connection of
    the process's held bookkeeping connection: one statement, one round trip, autocommit."""
    return await _on_held_connection(fn, True, *args, **kwargs)


async def _on_held_connection(
    fn: Callable[..., Coroutine[Any, Any, R]],
    driver: bool,
    *args: Any,
    lane: str = "default",
    **kwargs: Any,
) -> R:
    """Retried once when the connection turns out to be dead (a restarted server): the held
    connection is dropped and a fresh one taken from the pool. A second failure is raised as
    DatabaseUnreachable; any other error as it is."""
    for attempt in (1, 2):
        try:
            async with get_runtime().held_connection(lane) as connection:
                target = await RunStore.driver_connection(connection) if driver else connection
                return await fn(target, *args, **kwargs)
        except Exception as exc:
            if not unreachable(exc):
                raise
            if attempt == 2:
                raise DatabaseUnreachable(f"{type(exc).__name__}: {exc}") from exc
            log.warning("database connection lost (%s); retrying once", type(exc).__name__)
    raise AssertionError("unreachable")


def _now() -> datetime:
    """The database's time (see `scheduler.runtime.clock`): started and completed instants of every
    pool and host come from one clock."""
    return clock.now()


def _adapt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function Celery registers as `run`.

    - It always accepts `execution_id` (Celery checks call arguments against the signature)
      and passes it on only when `fn` declares it (or takes **kwargs).
    - An `async def` body becomes a synchronous function that runs the coroutine on the
      process's event loop, so exceptions surface inside `run`: Celery's `autoretry_for`
      wrapper (which wraps `run`) then retries async bodies exactly like plain ones.
    - An async body declaring `session` gets an `AsyncSession` of the process's engine.
    """
    if getattr(fn, "__tracked_adapted__", False):
        return fn
    is_async = inspect.iscoroutinefunction(fn)
    sig = inspect.signature(fn)
    wants_session = is_async and "session" in sig.parameters
    wants_id = _accepts_execution_id(fn)
    if wants_id and not is_async:
        return fn
    params = [p for p in sig.parameters.values() if p.name != "session"]
    if not wants_id:
        extra = inspect.Parameter("execution_id", inspect.Parameter.KEYWORD_ONLY, default=None)
        var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
        params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = [*params, extra, *var_kw]
    target: Callable[..., Any]
    if is_async:

        async def body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if wants_session:
                async with get_runtime().session() as session:
                    return await fn(*args, session=session, **kwargs)
            return await fn(*args, **kwargs)

        def run_async_body(*args: Any, **kwargs: Any) -> Any:
            if not wants_id:
                kwargs.pop("execution_id", None)
            return get_runtime().run(body(args, kwargs))

        target = run_async_body
    else:

        def run_sync(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("execution_id", None)
            return fn(*args, **kwargs)

        target = run_sync
    functools.update_wrapper(target, fn)
    setattr(target, "__signature__", sig.replace(parameters=params))  # noqa: B010
    setattr(target, "__tracked_adapted__", True)  # noqa: B010
    return target


def tracked_task(
    *, name: str | None = None, app: Any = None, **options: Any
) -> Callable[[Callable[P, R]], Any]:
    """Register `fn` as a tracked Celery task; accepts every `@app.task` option."""

    def decorate(fn: Callable[P, R]) -> Any:
        register = app.task if app is not None else shared_task
        return register(base=TrackedTask, name=name, **options)(fn)

    return decorate


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
    if not task_id or not isinstance(sender, TrackedTask):
        return
    metrics.run_ended_outside(sender.name, exception)
    if isinstance(exception, TimeLimitExceeded):
        _write_outside_run(task_id, ExecutionStatus.TIMEOUT, exception)
    elif isinstance(exception, WorkerLostError):
        _write_outside_run(task_id, ExecutionStatus.LOST, exception)


def _record_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    task = sender
    task_id = getattr(request, "id", None)
    if task_id and isinstance(task, TrackedTask):
        _write_outside_run(task_id, ExecutionStatus.REVOKED, None)


signals.worker_process_init.connect(_open_runtime, weak=False)
signals.worker_process_shutdown.connect(_close_runtime, weak=False)
# solo and threads pools run tasks in the main process: its outcome writes land before exit
signals.worker_shutdown.connect(_close_runtime, weak=False)
signals.task_revoked.connect(_record_revoked, weak=False)
signals.task_failure.connect(_record_lost_or_timeout, weak=False)
