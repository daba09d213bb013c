"""A connection and an event loop of the calling thread, for the one statement a run waits on.

Handing a statement to the process loop (`Runtime.run`) wakes that loop's thread and then
the caller again: measured here, about 100 us of CPU per call, as much as the statement's
own work, and 0.1-0.2 ms more wall time before the run starts. A worker's claim is on every
run's path, so a thread that runs tasks (a prefork child, a solo worker, each thread of a
threads pool) keeps its own asyncpg connection and loop and runs the claim there, in the
thread that waits for it. Green pools (gevent, eventlet) and a thread whose own event loop
is already running do not: they hand the statement over as before (`usable`).

Each connection is opened on first use and replaced once when found dead; closing the
runtime closes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from scheduler.core.exceptions import DatabaseUnreachable
from scheduler.runtime.dsn import asyncpg_dsn
from scheduler.runtime.retry import unreachable

R = TypeVar("R")
ATTEMPTS = 2
"""A connection found dead is replaced once before the statement counts as unreachable."""
LIMIT = 8
"""Threads of one process with a connection of their own: a threads pool of more (say
`-c 50` for I/O-bound tasks) hands the other threads' statements to the process loop, so a
worker never holds more than 8 connections beyond its engine's 10."""


@dataclass
class _Thread:
    loop: asyncio.AbstractEventLoop
    pid: int
    driver: Any = None


def green() -> bool:
    """True in a process whose threads were made green by gevent or eventlet."""
    gevent = sys.modules.get("gevent.monkey")
    if gevent is not None and gevent.is_module_patched("threading"):
        return True
    eventlet = sys.modules.get("eventlet.patcher")
    return bool(eventlet is not None and eventlet.is_monkey_patched("thread"))


class ThreadConnections:
    """One asyncpg connection and loop per calling thread, for one database URL."""

    def __init__(self, url: str, *, limit: int = LIMIT) -> None:
        self.dsn = asyncpg_dsn(url)
        self.limit = limit
        self._local = threading.local()
        self._all: list[_Thread] = []
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """Whether the calling thread may block in a loop of its own, and has (or may open)
        a connection of its own: at most `limit` threads of a process do."""
        if green() or asyncio._get_running_loop() is not None:
            return False
        state: _Thread | None = getattr(self._local, "state", None)
        if state is not None and state.pid == os.getpid():
            return True
        with self._lock:
            return sum(1 for s in self._all if s.pid == os.getpid()) < self.limit

    def run(self, fn: Callable[..., Coroutine[Any, Any, R]], *args: Any, **kwargs: Any) -> R:
        """`fn(driver, *args, **kwargs)` on this thread's connection. A dead connection is
        replaced once; a second failure is raised as DatabaseUnreachable, any other error
        as it is."""
        state = self._state()
        for attempt in range(ATTEMPTS):
            try:
                if state.driver is None or state.driver.is_closed():
                    state.driver = self._complete(state, self._connect())
                return self._complete(state, fn(state.driver, *args, **kwargs))
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self._drop(state)
                if attempt + 1 == ATTEMPTS:
                    raise DatabaseUnreachable(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _complete(self, state: _Thread, coro: Coroutine[Any, Any, R]) -> R:
        task = state.loop.create_task(coro)
        try:
            return state.loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                # interrupted while waiting (a soft time limit, a signal): the statement is
                # left half-way, so the connection goes with it
                task.cancel()
                self._drop(state)
                with contextlib.suppress(BaseException):
                    state.loop.run_until_complete(task)
            raise

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn)

    def _state(self) -> _Thread:
        state: _Thread | None = getattr(self._local, "state", None)
        if state is None or state.pid != os.getpid():
            # after fork the parent's connection is left alone: closing it would end the
            # parent's session
            state = _Thread(loop=asyncio.new_event_loop(), pid=os.getpid())
            self._local.state = state
            with self._lock:
                self._all.append(state)
        return state

    @staticmethod
    def _drop(state: _Thread) -> None:
        driver, state.driver = state.driver, None
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.terminate()

    def close(self) -> None:
        """Close every thread's connection and loop (from any thread, at shutdown)."""
        with self._lock:
            states, self._all = [s for s in self._all if s.pid == os.getpid()], []
        for state in states:
            driver, state.driver = state.driver, None
            if driver is not None:
                with contextlib.suppress(Exception):
                    if state.loop.is_running():
                        driver.terminate()
                    else:
                        state.loop.run_until_complete(asyncio.wait_for(driver.close(), timeout=2))
            if not state.loop.is_running():
                with contextlib.suppress(Exception):
                    state.loop.close()
