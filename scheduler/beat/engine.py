"""The beat's pass: the due rows planned and written, batch after batch, over one held state.

A batch is one transaction: lock due rows (SKIP LOCKED, so beats share the work), plan,
insert the runs (`ON CONFLICT (id) DO NOTHING`, a slot's id derived from it: a slot exists
once, whichever beat gets there), advance the schedules, commit; then publish only the rows
this batch inserted and mark them `queued` (`scheduler.beat.delivery`). A crash between
commit and publish leaves rows `pending`, which the outbox sweep republishes with the same
task id (`scheduler.beat.outbox`).

Runs of `allow` schedules due within the lead (`scheduler.core.writeahead`) are written ahead
and held in memory until their time, so when a busy second comes only the publish is left to
do. A change notification re-checks the held runs: one whose schedule was disabled, removed
or re-timed in the meantime is withdrawn (its `pending` row deleted) instead of published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.beat.delivery import Delivery
from scheduler.beat.messages import execution_values, run_message, update_values
from scheduler.core.bounds import plain
from scheduler.core.domain import OverlapPolicy
from scheduler.core.planner import (
    DueSchedule,
    Plan,
    PlannedRun,
    PlannerSettings,
    ScheduleUpdate,
    plan,
)
from scheduler.core.writeahead import Lead, WriteRate, first_sight_s, horizon_s, lead, wake_at
from scheduler.observability import metrics
from scheduler.runtime import clock
from scheduler.store.dispatch import DispatchStore, DueOutlook

log = logging.getLogger(__name__)
PROFILE_STEP_S = 0.25
"""The resolution, in seconds, of the count of rows due ahead that sizes the lead."""
PIPELINE_DEPTH = 2
"""Batch transactions a drain keeps in flight at once."""
HELD_MAX = 100_000
"""Most runs a beat holds written ahead; past it, it writes only what is due (memory: see
docs/BENCHMARKS.md for what a held run costs)."""
_REPORT_MAX = 20
YIELD_EVERY = 100
"""Rows a batch plans (or messages it builds) between two yields to the event loop: a batch
of 1,000 is ~50-200 ms of CPU, and a held run whose slot comes meanwhile must not wait for
it (the drain publishes it at the next yield)."""


def utcnow() -> datetime:
    """The database's time as this process tracks it (see `scheduler.runtime.clock`)."""
    return clock.now()


@dataclass(frozen=True)
class TickResult:
    locked: int
    inserted: int
    published: int
    flagged: int
    full: bool
    """The batch was full: more rows may be due right now."""


def _later(run: PlannedRun, now: datetime) -> bool:
    """A run written ahead: its slot has not come yet."""
    return run.scheduled_for is not None and run.scheduled_for > now


class Engine:
    """The pass of one beat. Its state between passes: the held runs, the sized lead and the
    measured write rate, the errors already reported."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        delivery: Delivery,
        registered: frozenset[str] | None,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.delivery = delivery
        self.held = delivery.held
        self.registered = registered
        self.settings = settings
        self.planner_settings = PlannerSettings(
            default_grace_s=settings.beat_default_misfire_grace_s,
            max_catchup=settings.beat_max_catchup,
        )
        self.lookahead = timedelta(seconds=settings.beat_lookahead_s)
        """The least lead: runs of `allow` rows due within it are always written ahead."""
        self.window = (
            max(self.lookahead, timedelta(seconds=settings.beat_lookahead_max_s))
            if settings.beat_lookahead_s > 0
            else timedelta(0)
        )
        """How far the beat looks to size the lead, and the most it writes ahead."""
        self.write_rate = WriteRate()
        self._lead = Lead(start_in_s=None, horizon_s=settings.beat_lookahead_s)
        self._first_sight_s = settings.beat_lookahead_s
        """How far ahead rows seen for the first time are written (sized by their count)."""
        self.flags = FlagReport()
        self.changed = False
        """A schedule changed (NOTIFY): held runs are re-checked on the next pass."""

    async def tick(self, now: datetime) -> TickResult:
        """One batch of the rows due at `now` (no lookahead): commit the runs, then publish
        them and mark them queued."""
        result, fired = await self._commit_batch(now, horizon=now)
        published = await self.delivery.publish_and_mark(fired)
        return dataclasses.replace(result, published=published)

    async def _commit_batch(
        self, now: datetime, *, horizon: datetime, first_horizon: datetime | None = None
    ) -> tuple[TickResult, list[PlannedRun]]:
        """The transactional half of a batch: returns the runs it inserted, not yet published
        (those of slots after `now` are to be held until their time)."""
        async with self.sessions() as session, session.begin():
            await DispatchStore.mark_beat_transaction(session)
            rows = await DispatchStore.lock_due_schedules(
                session, now=now, limit=self.settings.beat_max_batch, horizon=horizon
            )
            if not rows:
                return TickResult(0, 0, 0, 0, full=False), []
            watch = [r["id"] for r in rows if r["overlap_policy"] != OverlapPolicy.ALLOW]
            counts = await DispatchStore.run_counts(session, watch)
            due: list[DueSchedule] = []
            for row in rows:
                active, waiting = counts.get(row["id"], (0, 0))
                due.append(DueSchedule(**row, active_runs=active, waiting_runs=waiting))
            result = Plan()
            for start in range(0, len(due), YIELD_EVERY):
                part = plan(
                    due[start : start + YIELD_EVERY],
                    now=now,
                    horizon=horizon,
                    first_horizon=first_horizon,
                    registered=self.registered,
                    settings=self.planner_settings,
                )
                result.runs.extend(part.runs)
                result.updates.extend(part.updates)
                await asyncio.sleep(0)  # a held run whose slot came goes out meanwhile
            inserted = await DispatchStore.insert_executions(
                session, [execution_values(r, now) for r in result.runs]
            )
            runs_added = Counter(r.schedule_id for r in result.runs if r.fires and r.id in inserted)
            fired = [r for r in result.runs if r.publishes and r.id in inserted]
            metrics.runs_planned(result.runs, inserted)
            await DispatchStore.update_schedules(
                session, [update_values(u, runs_added[u.id]) for u in result.updates]
            )
        flagged = [u for u in result.updates if u.last_error]
        self.flags.report(flagged, {d.id: d.name for d in due})
        if horizon > now or (first_horizon is not None and first_horizon > now):
            by_id = {row["id"]: row for row in rows}
            for index, run in enumerate(fired, start=1):
                if _later(run, now):
                    self._hold(run, by_id[run.schedule_id])
                if index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        return TickResult(
            locked=len(rows),
            inserted=len(inserted),
            published=0,
            flagged=len(flagged),
            full=len(rows) >= self.settings.beat_max_batch,
        ), fired

    async def outlook(self, now: datetime) -> DueOutlook:
        """What is due in the window; with `allow` rows in it, the lead is sized anew from
        their count per step and the measured write rate (see `scheduler.core.writeahead`)."""
        async with self.sessions() as session:
            outlook = await DispatchStore.due_outlook(session, horizon=now + self.window)
            profile = (
                await DispatchStore.allow_due_profile(
                    session, now=now, until=now + self.window, step_s=PROFILE_STEP_S
                )
                if outlook.allow_within is not None
                else []
            )
            uncomputed = (
                await DispatchStore.uncomputed_count(session, cap=HELD_MAX)
                if outlook.uncomputed
                else 0
            )
        self._lead = lead(
            profile,
            step_s=PROFILE_STEP_S,
            rows_per_s=self.write_rate.rows_per_s,
            base_s=self.lookahead.total_seconds(),
            max_s=self.window.total_seconds(),
        )
        self._first_sight_s = first_sight_s(
            uncomputed,
            rows_per_s=self.write_rate.rows_per_s,
            base_s=self.lookahead.total_seconds(),
            max_s=self.window.total_seconds(),
        )
        return outlook

    @property
    def horizon_s(self) -> float:
        return horizon_s(self._lead, held=len(self.held), held_max=HELD_MAX)

    @property
    def first_sight_horizon_s(self) -> float:
        """How far ahead the next pass writes rows it sees for the first time."""
        return 0.0 if len(self.held) >= HELD_MAX else self._first_sight_s

    def wake_at(self, outlook: DueOutlook, now: datetime) -> datetime | None:
        return wake_at(
            outlook,
            now,
            sized=self._lead,
            lookahead=self.lookahead,
            window=self.window,
            next_held_at=self.held.next_at,
        )

    async def run_pass(self, now: datetime) -> datetime | None:
        """Publish held runs that are due, write every row due by the lead (batch after
        batch); return when the next pass has work.

        When nothing is due this costs one indexed query, whatever the number of schedules."""
        if self.changed:
            self.changed = False
            await self.withdraw_changed()
        await self.delivery.publish_and_mark(self.held.take_due(now))
        wake = self.wake_at(await self.outlook(now), now)
        if wake is not None and wake <= now:
            await self._drain(now)
            wake = self.wake_at(await self.outlook(now), now)
        return wake

    async def _drain(self, now: datetime) -> None:
        """Batch after batch until one is not full, `PIPELINE_DEPTH` transactions at a time
        (SKIP LOCKED gives each its own rows; while one waits on the database the next plans),
        each batch's publish and `queued` marking overlapping the next transactions. Runs of
        later slots are held; held runs whose time comes meanwhile go out with the next
        publish. The rows written per second of this drain feed the write rate."""
        batches: set[asyncio.Task[tuple[datetime, TickResult, list[PlannedRun]]]] = set()
        publishing: set[asyncio.Task[int]] = set()
        started, locked, more = 0, 0, True
        clock_start = time.perf_counter()
        try:
            while True:
                while more and len(batches) < PIPELINE_DEPTH and started < 1000:
                    # the pass's time moved on by what the drain has taken so far
                    at = now + timedelta(seconds=time.perf_counter() - clock_start)
                    batches.add(asyncio.create_task(self._batch(at)))
                    started += 1
                if not batches:
                    break
                # wake for the next held run's time too: a long drain (a burst written ahead,
                # a high steady rate) does not hold back runs whose slot comes meanwhile
                done, batches = await asyncio.wait(
                    batches, timeout=self._until_next_held(), return_when=asyncio.FIRST_COMPLETED
                )
                ready = self.held.take_due(utcnow())
                for task in done:
                    at, result, fired = task.result()
                    locked += result.locked
                    more = more and result.full
                    ready.extend(r for r in fired if not _later(r, at))  # later ones are held
                if ready:
                    publishing.add(asyncio.create_task(self.delivery.publish_and_mark(ready)))
            self.write_rate.record(locked, time.perf_counter() - clock_start)
        finally:
            # a failed batch leaves its runs pending for the sweep; the others finish first
            outcomes = await asyncio.gather(*batches, *publishing, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]

    def _until_next_held(self) -> float | None:
        next_at = self.held.next_at
        return None if next_at is None else max(0.0, (next_at - utcnow()).total_seconds())

    async def _batch(self, now: datetime) -> tuple[datetime, TickResult, list[PlannedRun]]:
        result, fired = await self._commit_batch(
            now,
            horizon=now + timedelta(seconds=self.horizon_s),
            first_horizon=now + timedelta(seconds=self.first_sight_horizon_s),
        )
        if result.locked:
            log.debug(
                "tick: %d due, %d inserted, %d flagged",
                result.locked,
                result.inserted,
                result.flagged,
            )
        return now, result, fired

    def _hold(self, run: PlannedRun, row: dict[str, Any]) -> None:
        message = self.delivery.publisher.prepare(run_message(run), run.scheduled_for or utcnow())
        self.held.hold(run, message, row)

    async def flush_held(self) -> int:
        """Shutdown: publish the held runs due within the least lead, each at its time. Runs
        written further ahead (a burst's lead) stay `pending`: any beat's sweep publishes them
        shortly after their slot, so a stopping beat waits seconds, not the whole lead."""
        published = 0
        until = utcnow() + self.lookahead
        while (next_at := self.held.next_at) is not None and next_at <= until:
            delay = (next_at - utcnow()).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            published += await self.delivery.publish_and_mark(self.held.take_due(utcnow()))
        if self.held:
            log.info(
                "%d runs written ahead for later slots stay pending: the sweep publishes "
                "them at most %.0f s after their slot",
                len(self.held),
                self.settings.beat_sweep_after_s + 5,
            )
        return published

    async def withdraw_changed(self) -> int:
        """Withdraw held runs whose schedule was removed, disabled by hand or changed its task
        or timing since they were written: their rows are deleted, never published."""
        if not self.held:
            return 0
        async with self.sessions() as session, session.begin():
            current = await DispatchStore.schedule_identities(session, self.held.schedule_ids())
            runs = self.held.stale(current)
            if not runs:
                return 0
            withdrawn = await DispatchStore.withdraw_runs(session, [r.id for r in runs])
        metrics.runs_withdrawn(withdrawn)
        self.held.drop(r.id for r in runs)
        log.info("withdrew %d runs written ahead: their schedules changed", withdrawn)
        return withdrawn

    async def recheck_errors(self) -> int:
        """Clear the errors the beat set, so those rows are judged again (at start-up)."""
        async with self.sessions() as session, session.begin():
            cleared = await DispatchStore.clear_beat_errors(session)
        self.flags.reported.update(cleared)
        return len(cleared)


class FlagReport:
    """Rows flagged with `last_error`, logged once per change: thousands of bad rows do not
    flood the log at every start."""

    def __init__(self) -> None:
        self.reported: dict[int, str] = {}
        """The last error logged per flagged schedule id."""

    def report(self, flagged: Sequence[ScheduleUpdate], names: dict[int, str]) -> None:
        """One WARNING per row whose error is new or changed (at most `_REPORT_MAX` a pass),
        then one summary line."""
        if not flagged:
            return
        changed = [u for u in flagged if self.reported.get(u.id) != u.last_error]
        for update in changed[:_REPORT_MAX]:
            log.warning(
                "schedule %s cannot run: %s",
                plain(names.get(update.id, str(update.id))),
                plain(update.last_error or ""),
            )
        for update in flagged:
            self.reported[update.id] = update.last_error or ""
        log.warning(
            "%d schedules flagged with last_error in this pass (%d new or changed, %d logged)",
            len(flagged),
            len(changed),
            min(len(changed), _REPORT_MAX),
        )
