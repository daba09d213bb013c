"""`scheduler.beat:DatabaseScheduler`: Celery's beat, reading schedules from PostgreSQL.

Thin glue: Celery calls `tick()` in a loop; each call sleeps until the next pass has work
(a slot coming within the lookahead, a held run's time, a NOTIFY from the schedules table, or
shutdown), then runs one pass of the dispatcher (`scheduler.beat.dispatcher`) on this
process's event loop. Data never crashes it: bad rows get `last_error`. Outages are logged
and retried with a capped back-off. On SIGTERM the pass under way finishes, then the
connections close; runs written ahead are published at their time first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from datetime import datetime
from typing import Any

from celery.beat import Scheduler

from config.settings import get_settings
from scheduler.beat import config_sync
from scheduler.beat.dispatcher import Dispatcher
from scheduler.beat.engine import utcnow
from scheduler.beat.leader import LeaderLock
from scheduler.beat.listener import ChangeListener, Wakeup
from scheduler.beat.reaper import WorkerWatch
from scheduler.beat.upkeep import Upkeep
from scheduler.broker.publisher import Publisher
from scheduler.observability import health, metrics
from scheduler.observability.alerts import Observer, celery_send_task
from scheduler.runtime import clock
from scheduler.runtime.db import Runtime, get_runtime
from scheduler.runtime.retry import backoff_s

log = logging.getLogger(__name__)


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """A Celery beat scheduler whose schedule is the `schedules` table."""

    lock_key: str | None = None
    """Read by RedBeat's `beat_init` handler, which importing redbeat (the leader lock uses
    its renewal script) connects for every beat: None tells it there is no RedBeat lock to
    take at start-up. The optional leader lock is taken and renewed in `tick`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.settings = get_settings()
        self._wakeup = Wakeup()
        self._next_due: datetime | None = None
        self._failures = 0
        self._closed = False
        self._in_flight: concurrent.futures.Future[Any] | None = None
        self._runtime: Runtime | None = None
        self._dispatcher: Dispatcher | None = None
        self._listener: ChangeListener | None = None
        self._upkeep: Upkeep | None = None
        self._leader: LeaderLock | None = None
        self._heartbeat = health.Heartbeat(health.liveness_bound_s(self.settings))
        self._http: health.ObservabilityServer | None = None
        self._observer: Observer | None = None
        super().__init__(*args, **kwargs)

    # Celery's hooks ------------------------------------------------------------------

    def setup_schedule(self) -> None:
        self.app.loader.import_default_modules()
        registered = frozenset(name for name in self.app.tasks if not name.startswith("celery."))
        self._runtime = get_runtime()
        default_limit = self.app.conf.task_time_limit
        limits = {
            name: float(getattr(self.app.tasks[name], "time_limit", None) or default_limit)
            for name in registered
            if getattr(self.app.tasks[name], "time_limit", None) or default_limit
        }
        self._dispatcher = Dispatcher(
            sessions=self._runtime.sessions,
            publisher=Publisher(self.app, confirm_timeout_s=self.settings.beat_confirm_timeout_s),
            registered=registered,
            settings=self.settings,
            time_limits_s=limits,
            watch=WorkerWatch(self.app),
        )
        if self.settings.beat_leader_lock:
            self._leader = LeaderLock(
                str(self.app.conf.broker_url),
                self.settings.beat_leader_lock_timeout_s,
                master_name=(self.app.conf.broker_transport_options or {}).get("master_name"),
            )
        self._listener = ChangeListener(self._runtime.url, self._on_change)
        self._upkeep = Upkeep(self._runtime.sessions, self.settings)
        if self.settings.beat_http_port is not None:
            self._http = health.serve(self.settings.beat_http_port, heartbeat=self._heartbeat)
        self._observer = Observer(
            self._runtime.loop,
            self._runtime.sessions,
            self.settings,
            send_task=celery_send_task(self.app),
        ).start()
        log.info("database scheduler ready: %d registered tasks", len(registered))
        try:
            self._call(self._sync_config(registered))
        except Exception as exc:
            log.warning("could not sync beat_schedule into schedules: %s", exc)
        try:
            cleared = self._call(self._dispatcher.recheck_errors())
            if cleared:
                log.info("looking again at %d schedules flagged with last_error", cleared)
        except Exception as exc:
            log.warning("could not recheck flagged schedules: %s", exc)

    @property
    def schedule(self) -> dict[str, Any]:
        return {}

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if self._closed or self._dispatcher is None or self._listener is None:
            return 0.0
        self._sleep_until_due()
        if self._closed:
            return 0.0
        if self._leader is not None and not self._leader.hold():
            if self._dispatcher.held:  # written while leading: they go out at their time
                self._call(self._dispatcher.flush_held())
            self._next_due = None
            self._heartbeat.beat()
            self._wakeup.sleep(self._leader.retry_s)
            return 0.0
        started = time.perf_counter()
        try:
            self._next_due = self._call(self._pass(self._dispatcher, self._listener))
            self._failures = 0
            metrics.beat_pass(time.perf_counter() - started, time.time())
            metrics.runs_held(self._dispatcher.held)
        except Exception as exc:
            self._failures += 1
            wait_s = backoff_s(self._failures, self.settings.beat_backoff_max_s, first_s=0.5)
            log.error("beat pass failed (%s); retrying in %.1f s", exc, wait_s)
            self._next_due = None
            self._heartbeat.beat()
            self._wakeup.sleep(wait_s)
        self._heartbeat.beat()
        return 0.0

    def sync(self) -> None:
        """Nothing to save: the database is the state."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.ring()
        if self._in_flight is not None and not self._in_flight.done():
            log.info("finishing the current tick before shutting down")
            try:
                self._in_flight.result(timeout=60)
            except Exception as exc:
                log.warning("the last tick failed while shutting down: %s", exc)
        if self._runtime is not None and self._dispatcher is not None and self._dispatcher.held:
            log.info("publishing %d runs written ahead at their time", self._dispatcher.held)
            try:
                timeout = self.settings.beat_lookahead_s + 30
                self._runtime.run(self._dispatcher.flush_held(), timeout=timeout)
            except Exception as exc:
                log.warning("runs written ahead stay pending for the sweep: %s", exc)
        if self._observer is not None:
            self._observer.stop()
        if self._http is not None:
            self._http.stop()
        if self._runtime is not None and self._listener is not None:
            try:
                self._runtime.run(self._listener.close(), timeout=5)
            except Exception as exc:
                log.debug("closing the listener failed: %s", exc)
        if self._dispatcher is not None:
            self._dispatcher.publisher.close()
        if self._leader is not None:
            self._leader.release()
        if self._runtime is not None:
            self._runtime.close()
        log.info("database scheduler stopped")

    @property
    def info(self) -> str:
        return "    . db -> schedules table (LISTEN scheduler_schedules)"

    # internals -----------------------------------------------------------------------

    def _on_change(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.note_change()
        self._wakeup.ring()

    def _sleep_until_due(self) -> None:
        if self._next_due is None:
            return
        delay = (self._next_due - utcnow()).total_seconds()
        cap = self.settings.beat_max_sleep_s
        if self._leader is not None:
            cap = min(cap, self._leader.retry_s)  # renew the lock well before it expires
        if delay > 0:
            self._wakeup.sleep(min(delay, cap))

    async def _sync_config(self, registered: frozenset[str]) -> None:
        assert self._runtime is not None
        async with self._runtime.sessions() as session, session.begin():
            await config_sync.sync_app(session, self.app, registered)

    async def _pass(self, dispatcher: Dispatcher, listener: ChangeListener) -> datetime | None:
        try:
            if await listener.ensure():
                log.info("listening for schedule changes")
        except Exception as exc:
            log.warning("LISTEN connection failed (%s): polling until it is back", exc)
        assert self._runtime is not None
        try:  # one clock: the database's, read with each pass (see scheduler.runtime.clock)
            await clock.CLOCK.read(self._runtime.autocommit)
        except Exception as exc:
            log.warning("could not read the database clock (%s): keeping the last reading", exc)
        next_due = await dispatcher.run_once(utcnow())
        if self._upkeep is not None:
            self._upkeep.poke(utcnow())
        return next_due

    def _call(self, coro: Any) -> Any:
        """Run on the process loop; the future is kept so shutdown can let it finish."""
        assert self._runtime is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._runtime.loop)
        self._in_flight = future
        return future.result()
