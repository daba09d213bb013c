"""One clock for every process: PostgreSQL's.

Every due decision and every recorded instant (a run's created, queued, started and completed
times, a schedule's next slot) is read from this clock, never from the host's: beats on many
hosts, each with its own clock error, then agree on when a slot has come, and the rows they and
the workers write are comparable.

The clock is PostgreSQL's `clock_timestamp()`, read in a few round trips on one connection
(the instant of the shortest is placed half-way through it) and carried forward with
`time.monotonic()` between reads, so reading the time costs no query. A beat reads it again
with each pass; a worker once before its first run, then when its reading is older than
`clock_resync_s` (in the background: no run waits for it).
A host clock stepped by NTP in between changes nothing: the monotonic clock does not step.

Until the first read succeeds (the database cannot be reached yet) the host's clock is used.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.store.dispatch import DispatchStore

if TYPE_CHECKING:
    from scheduler.runtime.db import Runtime

log = logging.getLogger(__name__)
DEFAULT_RESYNC_S = 30.0
SAMPLES = 3
WARN_OFFSET_S = 1.0
"""A host clock this far from the database's is logged (again when the offset moves as much)."""


class DatabaseClock:
    """The database's time, tracked against the monotonic clock between reads."""

    def __init__(self) -> None:
        self._anchor: tuple[datetime, float] | None = None
        """(database time, monotonic time) of the last read: swapped whole, read lock-free."""
        self._refreshing = threading.Lock()
        self._first = threading.Lock()
        self.offset_s: float | None = None
        """Database minus host, in seconds, at the last read (None before any)."""
        self._warned_offset: float | None = None

    @property
    def synced(self) -> bool:
        return self._anchor is not None

    def age_s(self) -> float:
        """Seconds since the last read (infinite before any)."""
        anchor = self._anchor
        return float("inf") if anchor is None else time.monotonic() - anchor[1]

    def now(self) -> datetime:
        """The database's current time (the host's before the first read)."""
        anchor = self._anchor
        if anchor is None:
            return datetime.now(UTC)
        base, at = anchor
        return base + timedelta(seconds=time.monotonic() - at)

    def set(self, database_time: datetime, before: float, after: float) -> None:
        """Record a reading of the database clock taken between monotonic `before` and
        `after` (the instant is placed half-way: the error is at most half the round trip)."""
        middle = (before + after) / 2
        host = datetime.now(UTC) - timedelta(seconds=time.monotonic() - middle)
        self._anchor = (database_time.astimezone(UTC), middle)
        self.offset_s = (database_time - host).total_seconds()
        last = self._warned_offset
        if abs(self.offset_s) >= WARN_OFFSET_S and (
            last is None or abs(self.offset_s - last) >= WARN_OFFSET_S
        ):
            self._warned_offset = self.offset_s
            log.warning(
                "this host's clock is %.1f s %s the database's: times come from the database",
                abs(self.offset_s),
                "behind" if self.offset_s > 0 else "ahead of",
            )

    async def read(self, engine: AsyncEngine, samples: int = SAMPLES) -> float:
        """Read the database clock on a pooled connection, `samples` times, and keep the read
        with the shortest round trip (its error is the smallest: at most half of it; the first
        read on a connection also prepares the statement). Returns the host's offset."""
        best: tuple[float, datetime, float, float] | None = None
        async with engine.connect() as connection:
            for _ in range(samples):
                before = time.monotonic()
                database_time = await DispatchStore.database_time(connection)
                after = time.monotonic()
                if best is None or after - before < best[0]:
                    best = (after - before, database_time, before, after)
        assert best is not None
        self.set(best[1], best[2], best[3])
        return self.offset_s or 0.0

    async def refresh(self, engine: AsyncEngine, max_age_s: float) -> None:
        """Read again when the last reading is older than `max_age_s`; failures are logged
        (the tracked time stays in use)."""
        if self.age_s() < max_age_s or not self._refreshing.acquire(blocking=False):
            return
        try:
            await self.read(engine)
        except Exception as exc:
            log.warning("could not read the database clock (%s): keeping the last reading", exc)
        finally:
            self._refreshing.release()

    def keep_synced(self, runtime: Runtime, max_age_s: float = DEFAULT_RESYNC_S) -> None:
        """For synchronous callers (a worker's run path): read the clock now, waiting, when
        it was never read; start a background read when the last one is stale."""
        if self._anchor is None:
            with self._first:  # threads of one pool wait for the one first read
                if self._anchor is not None:
                    return
                try:
                    runtime.run(self.read(runtime.autocommit), timeout=10)
                except Exception as exc:  # the run path reports an unreachable database
                    log.warning("could not read the database clock: %s", exc)
        elif self.age_s() >= max_age_s and not self._refreshing.locked():
            runtime.submit(self.refresh(runtime.autocommit, max_age_s))


CLOCK = DatabaseClock()
"""The process's clock. Inherited across fork as it is: the monotonic clock is system-wide."""


def now() -> datetime:
    """The database's current time, as this process tracks it."""
    return CLOCK.now()
