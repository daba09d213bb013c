"""`Dispatcher`: one beat's duties behind one object, each duty in its own module.

- the pass, over the held runs (`scheduler.beat.engine`);
- the outbox: pending runs republished, unclaimed queued runs recovered (`scheduler.beat.outbox`);
- runs an operator asks for: trigger, retry, backfill (`scheduler.beat.trigger`);
- the reaper, for runs whose worker died (`scheduler.beat.reaper`).

They share one publisher and one record of broker outages (`scheduler.beat.delivery`). The
beat's Celery glue, the Python API and the tests drive the beat through this facade; it adds
only the pacing of the periodic duties (`maintenance`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.beat.delivery import Delivery
from scheduler.beat.engine import Engine, TickResult
from scheduler.beat.outbox import Outbox
from scheduler.beat.reaper import WorkerWatch, reap_lost
from scheduler.beat.trigger import BackfillReport, ManualRuns, TriggerResult
from scheduler.broker.frames import OutgoingMessage
from scheduler.broker.publisher import Publisher
from scheduler.core.held import HeldRuns
from scheduler.core.writeahead import WriteRate
from scheduler.store.dispatch import DueOutlook

log = logging.getLogger(__name__)
REAP_EVERY_S = 30.0


class Dispatcher:
    """Async operations of one beat process; its state is the engine's (held runs, lead)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        registered: frozenset[str] | None,
        settings: Settings,
        time_limits_s: dict[str, float] | None = None,
        watch: WorkerWatch | None = None,
    ) -> None:
        self.sessions = sessions
        self.watch = watch
        self.time_limits_s = time_limits_s or {}
        self.publisher = publisher
        self.registered = registered
        self.settings = settings
        self.delivery = Delivery(sessions, publisher, HeldRuns[OutgoingMessage]())
        self.engine = Engine(
            sessions=sessions, delivery=self.delivery, registered=registered, settings=settings
        )
        self.outbox = Outbox(sessions, self.delivery, settings)
        self.manual = ManualRuns(sessions, self.delivery, registered, settings)
        self._last_sweep = 0.0
        self._last_reap = 0.0
        self._last_queued_check = 0.0

    # the pass ---------------------------------------------------------------------------

    def note_change(self) -> None:
        """A schedule changed (NOTIFY): held runs are re-checked on the next pass."""
        self.engine.changed = True

    @property
    def held(self) -> int:
        return len(self.engine.held)

    @property
    def write_rate(self) -> WriteRate:
        return self.engine.write_rate

    @write_rate.setter
    def write_rate(self, rate: WriteRate) -> None:
        self.engine.write_rate = rate

    @property
    def horizon_s(self) -> float:
        """How far ahead the next pass writes: the sized lead, or nothing ahead while the
        beat already holds `HELD_MAX` runs."""
        return self.engine.horizon_s

    async def tick(self, now: datetime) -> TickResult:
        return await self.engine.tick(now)

    async def outlook(self, now: datetime) -> DueOutlook:
        return await self.engine.outlook(now)

    def wake_at(self, outlook: DueOutlook, now: datetime) -> datetime | None:
        """When the next pass has work (see `scheduler.core.writeahead.wake_at`)."""
        return self.engine.wake_at(outlook, now)

    async def run_once(self, now: datetime) -> datetime | None:
        """Publish held runs that are due, write every row due by the lookahead (batch after
        batch), run maintenance; return when the next pass has work."""
        wake = await self.engine.run_pass(now)
        await self.maintenance(now)
        return wake

    async def flush_held(self) -> int:
        return await self.engine.flush_held()

    async def withdraw_changed(self) -> int:
        return await self.engine.withdraw_changed()

    async def recheck_errors(self) -> int:
        return await self.engine.recheck_errors()

    # the outbox and the reaper ----------------------------------------------------------

    async def sweep(self, now: datetime) -> int:
        return await self.outbox.sweep(now)

    async def recover_queued(self, now: datetime) -> tuple[int, int]:
        return await self.outbox.recover_queued(now)

    async def maintenance(self, now: datetime) -> None:
        """The sweep (every few seconds), the reaper (every 30 s) and the check of unclaimed
        `queued` runs (every 30 s, or half the queued timeout when shorter), each bounded."""
        clock = time.monotonic()
        if clock - self._last_sweep >= min(self.settings.beat_sweep_after_s, 5.0):
            self._last_sweep = clock
            try:
                await self.sweep(now)
            except Exception as exc:
                log.warning("outbox sweep failed: %s", exc)
        if clock - self._last_queued_check >= min(REAP_EVERY_S, self.settings.queued_timeout_s / 2):
            self._last_queued_check = clock
            try:
                await self.recover_queued(now)
            except Exception as exc:
                log.warning("checking unclaimed queued runs failed: %s", exc)
        if clock - self._last_reap >= REAP_EVERY_S:
            self._last_reap = clock
            async with self.sessions() as session, session.begin():
                lost = await reap_lost(
                    session,
                    now=now,
                    time_limits_s=self.time_limits_s,
                    watch=self.watch,
                    publisher=self.publisher,
                )
            if self.watch is not None:
                self.watch.refresh()  # in the background: seen by the next reap
            if lost:
                log.warning("marked %d runs lost", lost)

    # runs an operator asks for ----------------------------------------------------------

    async def trigger(
        self,
        name: str,
        *,
        force: bool,
        now: datetime,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> TriggerResult:
        """See `ManualRuns.trigger`."""
        return await self.manual.trigger(name, force=force, now=now, args=args, kwargs=kwargs)

    async def retry(self, execution_id: uuid.UUID, *, now: datetime) -> TriggerResult:
        """See `ManualRuns.retry`."""
        return await self.manual.retry(execution_id, now=now)

    async def backfill(
        self,
        name: str,
        start: datetime,
        end: datetime,
        *,
        force: bool,
        dry_run: bool,
        now: datetime,
        progress: Callable[[int, int], None] | None = None,
    ) -> BackfillReport:
        """See `ManualRuns.backfill`."""
        return await self.manual.backfill(
            name, start, end, force=force, dry_run=dry_run, now=now, progress=progress
        )
