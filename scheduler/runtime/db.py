"""Engines, sessions and the per-process event loop.

Every process gets one pooled asyncpg engine and one persistent event loop, created lazily
after fork (a changed pid means a new process: nothing is inherited from the parent).
Synchronous code (Celery tasks, the beat, the CLI) hands coroutines to that loop with
`Runtime.run`; the loop lives in a daemon thread so it works the same under prefork,
threads and solo pools. Never `asyncio.run` per task; never an engine per task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from config.settings import Settings, get_settings
from scheduler.core.bounds import safe_loads
from scheduler.runtime.thread_connections import ThreadConnections

T = TypeVar("T")
log = logging.getLogger(__name__)


def create_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 5, **kwargs: Any
) -> AsyncEngine:
    """A pooled asyncpg engine. No pre-ping (it would double the round trips of every
    bookkeeping write): a dropped connection invalidates the pool, and callers retry once."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        json_deserializer=_loads,
        **kwargs,
    )


def _loads(text: str) -> Any:
    """JSON columns as Python values; a value this process cannot decode (nested past the
    parser's stack) as `Unreadable`, so one hostile row never fails a whole query."""
    return safe_loads(text)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Runtime:
    """The process's event loop (in a daemon thread) and its engine."""

    def __init__(self, url: str, *, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self.url = url
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name="scheduler-event-loop", daemon=True
        )
        self._thread.start()
        self.engine = self.run(_make_engine(url, settings.db_pool_size, settings.db_max_overflow))
        self.sessions = session_factory(self.engine)
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        """Same pool, one round trip per statement: for single-statement writes."""
        self._held: dict[str, tuple[AsyncConnection, Any]] = {}
        self._held_locks: dict[str, asyncio.Lock] = {}
        self._submitted: set[concurrent.futures.Future[Any]] = set()
        self._submitted_lock = threading.Lock()
        self.threads = ThreadConnections(url)
        """The calling threads' own connections, for the statement a run waits on."""

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the process loop from synchronous code and return its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Runtime.run() called from the runtime's own loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start `coro` on the process loop without waiting for it. `drain` (and `close`)
        wait for everything submitted; the coroutine handles its own errors."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        with self._submitted_lock:
            self._submitted.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._submitted_lock:
            self._submitted.discard(future)

    def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for submitted coroutines; returns how many did not finish."""
        with self._submitted_lock:
            pending = list(self._submitted)
        if not pending:
            return 0
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return len(not_done)

    @contextlib.asynccontextmanager
    async def held_connection(self, lane: str = "default") -> AsyncIterator[Any]:
        """The asyncpg connection under an autocommit connection kept checked out for the
        hot-path bookkeeping writes: no pool checkout, no isolation-level reset and no
        driver lookup per statement. One per `lane`, each serialized by its lock (writes in
        different lanes run side by side); dropped (and replaced on next use) after any
        error."""
        lock = self._held_locks.get(lane)
        if lock is None:
            lock = self._held_locks[lane] = asyncio.Lock()
        async with lock:
            held = self._held.get(lane)
            if held is None or held[0].closed or held[0].invalidated:
                connection = await self.autocommit.connect()
                raw = await connection.get_raw_connection()
                held = self._held[lane] = (connection, raw.driver_connection)
            try:
                yield held[1]
            except BaseException:
                self._held.pop(lane, None)
                with contextlib.suppress(Exception):
                    await held[0].invalidate()
                raise

    async def _close_held(self) -> None:
        held, self._held = self._held, {}
        for connection, _ in held.values():
            with contextlib.suppress(Exception):
                await connection.close()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    def close(self) -> None:
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            left = self.drain(timeout=35)
            if left:
                log.error("%d bookkeeping writes did not finish before shutdown", left)
            with contextlib.suppress(Exception):
                self.run(self._close_held(), timeout=5)
            with contextlib.suppress(Exception):
                self.run(self.engine.dispose(), timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()
        self.threads.close()


async def _make_engine(url: str, pool_size: int, max_overflow: int) -> AsyncEngine:
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime(url: str | None = None) -> Runtime:
    """This process's runtime, created on first use (after any fork)."""
    global _runtime
    current = _runtime
    if current is not None and current.pid == os.getpid() and (url is None or url == current.url):
        return current
    with _runtime_lock:
        current = _runtime
        if current is not None and current.pid == os.getpid():
            if url is None or url == current.url:
                return current
            current.close()
        if url is None:
            from scheduler.runtime.urls import resolve_database_url

            url = resolve_database_url()
        _runtime = Runtime(url)
        return _runtime


def close_runtime() -> None:
    """Dispose the engine and stop the loop of this process (a no-op in a forked child)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.close()
        _runtime = None
