"""A run's writes to `executions`: claim, progress, outcome, over the process's held connections.

Each write is one statement, autocommitted on a held connection of its lane (see `lane`), so
the run path costs one round trip per write. A connection found dead is replaced once; while
the database is restarting an outcome keeps being retried (~30 s), because a run that ended
must not stay `running`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import traceback as tb
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from config.settings import get_settings
from scheduler.core.bounds import storable, storable_json_text
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import DatabaseUnreachable
from scheduler.runtime import clock
from scheduler.runtime.db import get_runtime
from scheduler.runtime.retry import retry_unreachable, unreachable
from scheduler.store.run_tables import RunTables
from scheduler.worker import followup

R = TypeVar("R")
log = logging.getLogger(__name__)

OUTCOME_LANE = "outcomes"
LANES = 3
"""Held connections per kind of run-path write (claims, outcomes) in one process: the runs of
a threads, gevent or eventlet pool commit side by side (PostgreSQL flushes their commits
together) instead of queueing behind one connection. With the one writer of successes
(`scheduler.worker.successes`), 2 x 3 + 1 of the engine's 10 connections."""
FINISH_ATTEMPTS = 60
FINISH_RETRY_S = 0.5
"""A run's outcome is retried for up to ~30 s while the database is unreachable."""
RUN_TABLES = RunTables()
"""The partitions' id ranges, so a run's claim, outcome and progress name its partition."""
HELD_ATTEMPTS = 2
"""A held connection found dead is replaced once before the write counts as unreachable."""


def worker_id(node: str | None = None) -> str:
    """`node:pid` of this process: the Celery node name (`name@host`) inside a worker, the
    host name elsewhere (recomputed after fork)."""
    return f"{node or socket.gethostname()}:{os.getpid()}"


def json_text(value: Any) -> str:
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


def now() -> datetime:
    """The database's time (see `scheduler.runtime.clock`): started and completed instants of
    every pool and host come from one clock."""
    return clock.now()


def lane(kind: str) -> str:
    """The held connection this thread (or green thread) writes `kind` on."""
    return f"{kind}-{threading.get_ident() % LANES}"


def error_fields(error: BaseException) -> dict[str, Any]:
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


async def write_outcome(
    execution_id: str, outcome: dict[str, Any], lane: str = OUTCOME_LANE
) -> None:
    """Write a run's outcome; while the database is restarting, keep trying (~30 s). An
    outcome the database refuses (its texts) is stored again without them."""
    current = outcome

    async def write() -> None:
        nonlocal current
        try:
            # a lane of its own: the next run's claim does not queue behind this write
            await _finish(execution_id, current, lane)
        except DatabaseUnreachable:
            raise
        except Exception as exc:
            if current.get("error_type") == "OutcomeNotStored":
                raise
            # whatever the texts held, the run must not stay `running`
            log.exception("outcome of execution %s refused, stored without texts", execution_id)
            current = {
                **current,
                "result_summary": None,
                "progress_json": None,
                "error_type": "OutcomeNotStored",
                "error_message": storable(f"the outcome could not be stored: {exc}"[:4000]),
                "traceback": None,
            }
            await _finish(execution_id, current, lane)

    try:
        await retry_unreachable(write, attempts=FINISH_ATTEMPTS, wait_s=FINISH_RETRY_S)
    except DatabaseUnreachable as exc:
        log.error("could not record the outcome of execution %s: %s", execution_id, exc)
    except Exception:
        log.exception("could not record the outcome of execution %s", execution_id)


async def _finish(execution_id: str, outcome: dict[str, Any], lane: str) -> None:
    await on_held_connection(
        followup.finish_run, execution_id, lane=lane, tables=RUN_TABLES, **outcome
    )


def write_outside_run(task_id: str, status: ExecutionStatus, exc: BaseException | None) -> None:
    """An outcome learnt outside the run (hard time limit, dead child, revoke)."""
    clock.CLOCK.keep_synced(get_runtime(), get_settings().clock_resync_s)
    values: dict[str, Any] = {"status_id": status.id, "completed_at": now()}
    if exc is not None:
        values.update(error_fields(exc))
    try:
        get_runtime().run(followup.finish_outside_run(task_id, values))
    except Exception:
        log.exception("could not record %s for execution %s", status.value, task_id)


def on_run_path(
    fn: Callable[..., Coroutine[Any, Any, R]], *args: Any, kind: str, **kwargs: Any
) -> R:
    """A run-path statement that the calling thread waits for (a claim, a progress write):
    on the thread's own connection where the thread may block in a loop of its own (see
    `scheduler.runtime.thread_connections`), else on a held connection of the process loop
    (the lane of `kind` for this thread)."""
    runtime = get_runtime()
    threads = runtime.threads
    if threads.usable():
        return threads.run(fn, *args, tables=_thread_tables(), **kwargs)
    return runtime.run(bookkeeping(fn, *args, tables=RUN_TABLES, lane=lane(kind), **kwargs))


_own_tables = threading.local()


def _thread_tables() -> RunTables:
    """This thread's partition map, for the statements on its own connection (a map is read
    and refreshed by one loop at a time)."""
    tables: RunTables | None = getattr(_own_tables, "tables", None)
    if tables is None:
        tables = _own_tables.tables = RunTables()
    return tables


async def bookkeeping(fn: Callable[..., Coroutine[Any, Any, R]], *args: Any, **kwargs: Any) -> R:
    """One run-path store call (claim, finish, progress) on the asyncpg connection of
    the process's held bookkeeping connection: one statement, one round trip, autocommit."""
    return await on_held_connection(fn, *args, **kwargs)


async def on_held_connection(
    fn: Callable[..., Coroutine[Any, Any, R]],
    *args: Any,
    lane: str = "default",
    **kwargs: Any,
) -> R:
    """Retried once when the connection turns out to be dead (a restarted server): the held
    connection is dropped and a fresh one taken from the pool. A second failure is raised as
    DatabaseUnreachable; any other error as it is."""

    async def call() -> R:
        async with get_runtime().held_connection(lane) as driver:
            return await fn(driver, *args, **kwargs)

    def lost(exc: BaseException) -> None:
        log.warning("database connection lost (%s); retrying once", type(exc).__name__)

    try:
        return await retry_unreachable(call, attempts=HELD_ATTEMPTS, on_retry=lost)
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise DatabaseUnreachable(f"{type(exc).__name__}: {exc}") from exc
