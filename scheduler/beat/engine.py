"""The beat's engine: ticks, the outbox sweep, change notifications, manual triggers.

A tick is one transaction: lock due rows (SKIP LOCKED, so beats share the work), plan,
insert the runs (`ON CONFLICT (id) DO NOTHING`, a slot's id derived from it: a slot exists once,
whichever beat gets there), advance the schedules, commit; then publish only the rows this
tick inserted and mark them `queued`. A crash between commit and publish leaves rows
`pending`, which the sweep republishes with the same task id.

Runs of `allow` schedules due within the lookahead (`beat_lookahead_s`) are written ahead and
held in memory until their time, so when a busy second comes only the publish is left to do.
A change notification re-checks the held runs: one whose schedule was disabled, removed or
re-timed in the meantime is withdrawn (its `pending` row deleted) instead of published.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.beat.publisher import OutgoingMessage, Publisher
from scheduler.beat.reaper import QueuedRun, WorkerWatch, judge_queued, reap_lost
from scheduler.core.bounds import plain
from scheduler.core.domain import STATUS_IDS, ExecutionStatus, OverlapPolicy, Trigger
from scheduler.core.exceptions import (
    ConflictError,
    ExecutionNotFound,
    InvalidScheduleError,
    ScheduleNotFound,
)
from scheduler.core.execution_ids import new_execution_id
from scheduler.core.held import HeldRuns
from scheduler.core.options import check_options
from scheduler.core.planner import (
    DueSchedule,
    PlannedRun,
    PlannerSettings,
    ScheduleUpdate,
    backfill_slots,
    due_schedule_from_mapping,
    make_run,
    overlap_decisions,
    plan,
    validate_row,
)
from scheduler.core.writeahead import Lead, WriteRate, lead
from scheduler.observability import metrics
from scheduler.runtime import clock
from scheduler.store.dispatch import DispatchStore, DueOutlook
from scheduler.store.models import NOTIFY_CHANNEL
from scheduler.store.outbox import OutboxStore

log = logging.getLogger(__name__)
REAP_EVERY_S = 30.0
LOST_IN_TRANSIT_S = 10.0
"""Messages published this long before the broker was found down may have gone with it (a
worker had popped them and could not record the delivery): they are published again."""
REPUBLISH_LIMIT = 100_000
PROFILE_STEP_S = 0.25
"""The resolution, in seconds, of the count of rows due ahead that sizes the lead."""
PIPELINE_DEPTH = 2
"""Batch transactions a drain keeps in flight at once."""
HELD_MAX = 100_000
"""Most runs a beat holds written ahead; past it, it writes only what is due (memory: see
docs/BENCHMARKS.md for what a held run costs)."""


_REPORT_MAX = 20
RETRYABLE = frozenset(
    {
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.LOST,
        ExecutionStatus.REVOKED,
    }
)
"""The outcomes a run can be retried from (as a new run, trigger `retry`)."""


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


@dataclass(frozen=True)
class TriggerResult:
    execution_id: uuid.UUID
    status: ExecutionStatus
    """`queued` when published, `skipped` when the overlap policy refused it."""
    reason: str | None = None


def _execution_values(run: PlannedRun, now: datetime) -> dict[str, Any]:
    return {
        "id": run.id,
        "schedule_id": run.schedule_id,
        "task": run.task,
        "args": run.args,
        "kwargs": run.kwargs,
        "trigger": str.__str__(run.trigger),  # its text, without the enum's slow `.value`
        "scheduled_for": run.scheduled_for,
        "status_id": STATUS_IDS[run.status],
        "created_at": now,
        "completed_at": None if run.fires else now,
    }


def _update_values(update: ScheduleUpdate, runs_added: int) -> dict[str, Any]:
    """`runs_added` counts the runs actually inserted (a slot another beat took is not one)."""
    return {
        "runs_added": runs_added,
        "id": update.id,
        "next_run_at": update.next_run_at,
        "last_run_at": update.last_run_at,
        "enabled": update.enabled,
        "last_error": update.last_error,
    }


def _later(run: PlannedRun, now: datetime) -> bool:
    """A run written ahead: its slot has not come yet."""
    return run.scheduled_for is not None and run.scheduled_for > now


def _row_message(row: dict[str, Any]) -> OutgoingMessage:
    """The message of a run read back from `executions` (joined with its schedule's options;
    options edited since into ones that cannot be sent are left out, so this run still goes
    and does not hold back the others published with it)."""
    options = row["options"] if isinstance(row["options"], dict) else {}
    try:
        check_options(options)
    except InvalidScheduleError as exc:
        log.warning("run %s goes out without its schedule's options: %s", row["id"], exc)
        options = {}
    return OutgoingMessage(
        execution_id=str(row["id"]),
        task=row["task"],
        args=list(row["args"] or []),
        kwargs=dict(row["kwargs"] or {}),
        options=dict(options),
    )


def _message(run: PlannedRun) -> OutgoingMessage:
    return OutgoingMessage(
        execution_id=str(run.id),
        task=run.task,
        args=run.args,
        kwargs=run.kwargs,
        options=run.options,
        countdown_s=run.countdown_s,
    )


class Dispatcher:
    """Async operations of one beat process. Stateless between calls but for its clocks."""

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
        self._last_sweep = 0.0
        self._last_reap = 0.0
        self._last_queued_check = 0.0
        self._held = HeldRuns()
        self._changed = False
        self._reported: dict[int, str] = {}
        """The last error logged per flagged schedule id: each is logged once per change."""
        self._broker_lost_since: datetime | None = None
        """Set when a publish fails: runs queued since then are published again once the
        broker is back (a duplicate delivery runs nothing: the claim refuses it)."""

    def note_change(self) -> None:
        """A schedule changed (NOTIFY): held runs are re-checked on the next pass."""
        self._changed = True

    @property
    def held(self) -> int:
        return len(self._held)

    async def tick(self, now: datetime) -> TickResult:
        """One batch of the rows due at `now` (no lookahead): commit the runs, then publish
        them and mark them queued."""
        result, fired = await self._commit_batch(now, horizon=now)
        published = await self._publish_and_mark(fired)
        return dataclasses.replace(result, published=published)

    async def _commit_batch(
        self, now: datetime, *, horizon: datetime
    ) -> tuple[TickResult, list[PlannedRun]]:
        """The transactional half of a tick: returns the runs it inserted, not yet published
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
            result = plan(
                due,
                now=now,
                horizon=horizon,
                registered=self.registered,
                settings=self.planner_settings,
            )
            inserted = await DispatchStore.insert_executions(
                session, [_execution_values(r, now) for r in result.runs]
            )
            runs_added = Counter(r.schedule_id for r in result.runs if r.fires and r.id in inserted)
            fired = [r for r in result.runs if r.publishes and r.id in inserted]
            metrics.runs_planned(result.runs, inserted)
            await DispatchStore.update_schedules(
                session, [_update_values(u, runs_added[u.id]) for u in result.updates]
            )
        flagged = [u for u in result.updates if u.last_error]
        self._report_flagged(flagged, {d.id: d.name for d in due})
        if horizon > now:
            by_id = {row["id"]: row for row in rows}
            for run in fired:
                if _later(run, now):
                    self._hold(run, by_id[run.schedule_id])
        return TickResult(
            locked=len(rows),
            inserted=len(inserted),
            published=0,
            flagged=len(flagged),
            full=len(rows) >= self.settings.beat_max_batch,
        ), fired

    async def _publish_and_mark(self, runs: Sequence[PlannedRun]) -> int:
        if not runs:
            return 0
        messages = [self._held.message(r) or _message(r) for r in runs]
        try:
            await self._publish(messages)
            metrics.runs_published(runs, utcnow())
        except Exception as exc:
            log.warning(
                "publishing %d runs failed (%s): they stay pending for the sweep",
                len(runs),
                exc,
            )
            return 0
        async with self.sessions() as session, session.begin():
            await OutboxStore.mark_queued(session, [r.id for r in runs], now=utcnow())
        return len(runs)

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """On the loop itself: building and pushing messages is CPU work, and in a thread of
        its own it only fought the next batch's planning for the GIL (measured: a 10k
        backlog took 10-25% longer and a quarter more CPU). The socket wait is bounded by
        the broker client's timeouts."""
        try:
            self.publisher.publish(messages)
        except Exception:
            if self._broker_lost_since is None:
                self._broker_lost_since = utcnow() - timedelta(seconds=LOST_IN_TRANSIT_S)
            raise

    async def sweep(self, now: datetime) -> int:
        """Republish rows left `pending` longer than the sweep delay, with the same task id;
        runs written ahead whose schedule was since disabled or removed are withdrawn. After
        a broker outage, runs queued shortly before it are published again."""
        republished = await self._sweep_pending(now)
        if self._broker_lost_since is not None:
            await self._republish_queued(self._broker_lost_since)
        return republished

    async def _republish_queued(self, since: datetime) -> int:
        async with self.sessions() as session:
            rows = await OutboxStore.queued_since(session, since=since, limit=REPUBLISH_LIMIT)
        await self._publish([_row_message(r) for r in rows])
        self._broker_lost_since = None
        if rows:
            log.info(
                "broker back: published again %d runs queued since %s (duplicates run nothing)",
                len(rows),
                since.isoformat(timespec="seconds"),
            )
        return len(rows)

    async def _sweep_pending(self, now: datetime) -> int:
        cutoff = now - timedelta(seconds=self.settings.beat_sweep_after_s)
        async with self.sessions() as session, session.begin():
            found = await OutboxStore.lock_stale_pending(
                session, older_than=cutoff, limit=self.settings.beat_max_batch
            )
            withdrawn = await DispatchStore.withdraw_runs(
                session, [r["id"] for r in found if r["withdraw"]]
            )
            metrics.runs_withdrawn(withdrawn)
            if withdrawn:
                log.info("sweep withdrew %d runs written ahead of a disabled schedule", withdrawn)
            rows = [r for r in found if not r["withdraw"]]
            if not rows:
                return 0
            await self._publish([_row_message(r) for r in rows])
            await OutboxStore.mark_queued(session, [r["id"] for r in rows], now=utcnow())
        log.info("sweep republished %d pending runs", len(rows))
        return len(rows)

    async def recover_queued(self, now: datetime) -> tuple[int, int]:
        """Runs `queued` past their bound that no worker claimed: published again with the same
        task id, or `lost` after the longer bound; left alone while their queue holds messages
        (see `judge_queued`). Returns (republished, lost)."""
        async with self.sessions() as session, session.begin():
            rows = await OutboxStore.lock_stale_queued(
                session,
                now=now,
                timeout_s=self.settings.queued_timeout_s,
                lost_after_s=self.settings.queued_lost_after_s,
                limit=self.settings.beat_max_batch,
            )
            if not rows:
                return 0, 0
            messages = {r["id"]: _row_message(r) for r in rows}
            runs = [
                QueuedRun(
                    id=r["id"],
                    queue=self.publisher.route(r["task"], messages[r["id"]].options).queue,
                    queued_at=r["queued_at"],
                    created_at=r["created_at"],
                    timeout_s=float(r["timeout_s"]),
                    lost_after_s=float(r["lost_after_s"]),
                )
                for r in rows
            ]
            depths = self.publisher.queue_depths(sorted({run.queue for run in runs}))
            verdict = judge_queued(runs, depths, now=now)
            if verdict.republish:
                await self._publish([messages[i] for i in verdict.republish])
                await OutboxStore.requeued(session, verdict.republish, now=utcnow())
            lost = await OutboxStore.mark_unclaimed_lost(
                session,
                verdict.lost,
                now=now,
                reason="no worker claimed it: queued past its bound, published again, its "
                "queue empty",
            )
        if verdict.republish:
            log.warning(
                "published again %d runs queued past their bound that no worker claimed "
                "(their queue was empty)",
                len(verdict.republish),
            )
        if lost:
            log.warning("marked %d runs lost: queued and never claimed by a worker", lost)
        return len(verdict.republish), lost

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
        self._lead = lead(
            profile,
            step_s=PROFILE_STEP_S,
            rows_per_s=self.write_rate.rows_per_s,
            base_s=self.lookahead.total_seconds(),
            max_s=self.window.total_seconds(),
        )
        return outlook

    @property
    def horizon_s(self) -> float:
        """How far ahead the next pass writes: the sized lead, or nothing ahead while the
        beat already holds `HELD_MAX` runs."""
        return 0.0 if len(self._held) >= HELD_MAX else self._lead.horizon_s

    def wake_at(self, outlook: DueOutlook, now: datetime) -> datetime | None:
        """When the next pass has work: when writing the `allow` rows of the window must
        start (their slot minus the sized lead), a guarded row's slot, the next held run's
        time, or when the earliest row beyond the window enters it."""
        candidates: list[datetime] = []
        if outlook.uncomputed:
            candidates.append(datetime.min.replace(tzinfo=UTC))
        if outlook.earliest is not None and outlook.earliest > now + self.window:
            candidates.append(outlook.earliest - self.window)
        if outlook.allow_within is not None:
            start_in = self._lead.start_in_s
            candidates.append(
                now + timedelta(seconds=start_in)
                if start_in is not None
                else outlook.allow_within - self.lookahead
            )
        if outlook.guarded_within is not None:
            candidates.append(outlook.guarded_within)
        if self._held.next_at is not None:
            candidates.append(self._held.next_at)
        return min(candidates) if candidates else None

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

    async def run_once(self, now: datetime) -> datetime | None:
        """Publish held runs that are due, write every row due by the lookahead (batch after
        batch), run maintenance; return when the next pass has work.

        When nothing is due this costs one indexed query, whatever the number of schedules."""
        if self._changed:
            self._changed = False
            await self.withdraw_changed()
        await self._publish_and_mark(self._held.take_due(now))
        wake = self.wake_at(await self.outlook(now), now)
        if wake is not None and wake <= now:
            await self._drain(now)
            wake = self.wake_at(await self.outlook(now), now)
        await self.maintenance(now)
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
                ready = self._held.take_due(utcnow())
                for task in done:
                    at, result, fired = task.result()
                    locked += result.locked
                    more = more and result.full
                    ready.extend(r for r in fired if not _later(r, at))  # later ones are held
                if ready:
                    publishing.add(asyncio.create_task(self._publish_and_mark(ready)))
            self.write_rate.record(locked, time.perf_counter() - clock_start)
        finally:
            # a failed batch leaves its runs pending for the sweep; the others finish first
            outcomes = await asyncio.gather(*batches, *publishing, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]

    def _until_next_held(self) -> float | None:
        next_at = self._held.next_at
        return None if next_at is None else max(0.0, (next_at - utcnow()).total_seconds())

    async def _batch(self, now: datetime) -> tuple[datetime, TickResult, list[PlannedRun]]:
        result, fired = await self._commit_batch(
            now, horizon=now + timedelta(seconds=self.horizon_s)
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
        message = self.publisher.prepare(_message(run), run.scheduled_for or utcnow())
        self._held.hold(run, message, row)

    async def flush_held(self) -> int:
        """Shutdown: publish the held runs due within the least lead, each at its time. Runs
        written further ahead (a burst's lead) stay `pending`: any beat's sweep publishes them
        shortly after their slot, so a stopping beat waits seconds, not the whole lead."""
        published = 0
        until = utcnow() + self.lookahead
        while (next_at := self._held.next_at) is not None and next_at <= until:
            delay = (next_at - utcnow()).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            published += await self._publish_and_mark(self._held.take_due(utcnow()))
        if self._held:
            log.info(
                "%d runs written ahead for later slots stay pending: the sweep publishes "
                "them at most %.0f s after their slot",
                len(self._held),
                self.settings.beat_sweep_after_s + 5,
            )
        return published

    async def withdraw_changed(self) -> int:
        """Withdraw held runs whose schedule was removed, disabled by hand or changed its task
        or timing since they were written: their rows are deleted, never published."""
        if not self._held:
            return 0
        async with self.sessions() as session, session.begin():
            current = await DispatchStore.schedule_identities(session, self._held.schedule_ids())
            runs = self._held.stale(current)
            if not runs:
                return 0
            withdrawn = await DispatchStore.withdraw_runs(session, [r.id for r in runs])
        metrics.runs_withdrawn(withdrawn)
        self._held.drop(r.id for r in runs)
        log.info("withdrew %d runs written ahead: their schedules changed", withdrawn)
        return withdrawn

    def _report_flagged(self, flagged: Sequence[ScheduleUpdate], names: dict[int, str]) -> None:
        """One WARNING per row whose error is new or changed (at most `_REPORT_MAX` a pass),
        then one summary line: thousands of bad rows do not flood the log at every start."""
        if not flagged:
            return
        changed = [u for u in flagged if self._reported.get(u.id) != u.last_error]
        for update in changed[:_REPORT_MAX]:
            log.warning(
                "schedule %s cannot run: %s",
                plain(names.get(update.id, str(update.id))),
                plain(update.last_error or ""),
            )
        for update in flagged:
            self._reported[update.id] = update.last_error or ""
        log.warning(
            "%d schedules flagged with last_error in this pass (%d new or changed, %d logged)",
            len(flagged),
            len(changed),
            min(len(changed), _REPORT_MAX),
        )

    async def recheck_errors(self) -> int:
        async with self.sessions() as session, session.begin():
            cleared = await DispatchStore.clear_beat_errors(session)
        self._reported.update(cleared)
        return len(cleared)

    async def trigger(
        self,
        name: str,
        *,
        force: bool,
        now: datetime,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> TriggerResult:
        """Fire schedule `name` now (trigger `manual`, not a slot); publish and mark queued.
        `args`/`kwargs` replace the schedule's for this run only (recorded on the run).

        Respects the overlap policy unless `force`: when it refuses, a `skipped` row records
        why; a `buffer_one` run behind one in progress is written and held (`pending`) until
        that run's outcome releases it. Raises NotFoundError for an unknown name.
        """
        async with self.sessions() as session, session.begin():
            values = await DispatchStore.lock_schedule_for_trigger(session, name)
            if values is None:
                raise ScheduleNotFound(name)
            row = due_schedule_from_mapping(values)
            if args is not None:
                row = dataclasses.replace(row, args=args)
            if kwargs is not None:
                row = dataclasses.replace(row, kwargs=kwargs)
            try:
                validate_row(row, self.registered)
            except InvalidScheduleError as exc:
                raise InvalidScheduleError(f"schedule {name!r} cannot run: {exc}") from None
            overlap = OverlapPolicy(row.overlap_policy)
            refuse = not force and (
                (overlap is OverlapPolicy.SKIP and row.active_runs > 0)
                or (
                    overlap is OverlapPolicy.BUFFER_ONE
                    and row.active_runs > 0
                    and row.waiting_runs > 0
                )
            )
            status = ExecutionStatus.SKIPPED if refuse else ExecutionStatus.PENDING
            held = not force and overlap is OverlapPolicy.BUFFER_ONE and row.active_runs > 0
            run = make_run(row, None, Trigger.MANUAL, status, held=held)
            execution_id = run.id
            await DispatchStore.insert_executions(session, [_execution_values(run, now)])
        if refuse:
            return TriggerResult(
                execution_id,
                ExecutionStatus.SKIPPED,
                f"overlap policy {overlap.value}: a run is still in progress (use --force)",
            )
        if held:
            return TriggerResult(
                execution_id,
                ExecutionStatus.PENDING,
                "overlap policy buffer_one: it starts when the run in progress has finished",
            )
        published = await self._publish_and_mark([run])
        return TriggerResult(
            execution_id,
            ExecutionStatus.QUEUED if published else ExecutionStatus.PENDING,
            None if published else "broker unreachable: the beat's sweep will publish it",
        )

    async def retry(self, execution_id: uuid.UUID, *, now: datetime) -> TriggerResult:
        """A new run made from the earlier run `execution_id` (trigger `retry`): the same
        task, args, kwargs and schedule, `parent_id` the earlier run, `root_id` the earlier
        run's root (or the earlier run itself), no slot. Written `pending`, committed, then
        published and marked `queued` (the outbox sweep publishes it if the broker is down).

        Only a run of a schedule that ended failed, timed out, lost or revoked can be retried
        (others raise ConflictError); an operator's explicit request, so the overlap policy does not judge
        it. Raises NotFoundError for an unknown id."""
        async with self.sessions() as session, session.begin():
            earlier = await DispatchStore.lock_run_for_retry(session, execution_id)
            if earlier is None:
                raise ExecutionNotFound(execution_id)
            status = ExecutionStatus.from_id(earlier["status_id"])
            if status not in RETRYABLE:
                raise ConflictError(
                    f"run {execution_id} is {status.value}: only a failed, timed-out, lost or "
                    "revoked run can be retried"
                )
            if earlier["schedule_id"] is None:
                raise ConflictError(
                    f"run {execution_id} belongs to no schedule (a direct call): "
                    "retry it from the code that sent it"
                )
            options = earlier["options"] if isinstance(earlier["options"], dict) else {}
            try:
                check_options(options)
            except InvalidScheduleError as exc:
                log.warning(
                    "retry of %s goes out without its schedule's options: %s", execution_id, exc
                )
                options = {}
            new_id = new_execution_id()
            kwargs = dict(earlier["kwargs"] or {})
            kwargs["execution_id"] = str(new_id)
            run = PlannedRun(
                id=new_id,
                schedule_id=earlier["schedule_id"],
                task=earlier["task"],
                args=list(earlier["args"] or []),
                kwargs=kwargs,
                options=dict(options),
                trigger=Trigger.RETRY,
                scheduled_for=None,
                status=ExecutionStatus.PENDING,
            )
            values = _execution_values(run, now)
            values["parent_id"] = execution_id
            values["root_id"] = earlier["root_id"] or execution_id
            await DispatchStore.insert_executions(session, [values])
        published = await self._publish_and_mark([run])
        return TriggerResult(
            new_id,
            ExecutionStatus.QUEUED if published else ExecutionStatus.PENDING,
            None if published else "broker unreachable: the beat's sweep will publish it",
        )

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
        """One run (trigger `backfill`, `scheduled_for` = the slot) for each of the schedule's
        slots at or after `start` and at or before `end` (and not after `now`) that has none
        yet: the slot's unique key makes a second backfill of a range create nothing.

        At most `backfill_max` slots (more is refused, nothing written). Unless `force`, the
        overlap policy judges the new runs as if they came one after another: `skip` makes
        one when nothing runs, `buffer_one` one plus one held back; the others are reported
        as skipped and left unwritten (a later backfill can fill them). Runs are written
        `pending` and committed, then published and marked `queued` (the outbox sweep
        publishes what a failed publish left). `progress(done, total)` follows publishing."""
        async with self.sessions() as session, session.begin():
            values = await DispatchStore.lock_schedule_for_trigger(session, name)
            if values is None:
                raise ScheduleNotFound(name)
            row = due_schedule_from_mapping(values)
            try:
                timing = validate_row(row, self.registered)
            except InvalidScheduleError as exc:
                raise InvalidScheduleError(f"schedule {name!r} cannot run: {exc}") from None
            if end < start:
                raise InvalidScheduleError("--to is before --from")
            slots = (
                []
                if start > now
                else backfill_slots(
                    row, timing, start, min(end, now), limit=self.settings.backfill_max
                )
            )
            existing = await DispatchStore.existing_slots(session, row.id, slots)
            missing = [slot for slot in slots if slot not in existing]
            policy = OverlapPolicy.ALLOW if force else OverlapPolicy(row.overlap_policy)
            decisions = overlap_decisions(policy, row.active_runs, row.waiting_runs, len(missing))
            runs = [
                make_run(row, slot, Trigger.BACKFILL, ExecutionStatus.PENDING, held=held)
                for slot, (fires, held) in zip(missing, decisions, strict=True)
                if fires
            ]
            skipped = [
                slot for slot, (fires, _) in zip(missing, decisions, strict=True) if not fires
            ]
            inserted: set[uuid.UUID] = set()
            if not dry_run and runs:
                inserted = await DispatchStore.insert_executions(
                    session, [_execution_values(r, now) for r in runs]
                )
        created = [r for r in runs if dry_run or r.id in inserted]
        report = BackfillReport(
            schedule=name,
            created=[r.scheduled_for for r in created if r.scheduled_for is not None],
            existing=sorted(existing),
            skipped=skipped,
            execution_ids=[] if dry_run else [r.id for r in created],
            dry_run=dry_run,
        )
        ready = [r for r in created if r.publishes and not dry_run]
        done = 0
        for first in range(0, len(ready), BACKFILL_PUBLISH_BATCH):
            batch = ready[first : first + BACKFILL_PUBLISH_BATCH]
            await self._publish_and_mark(batch)
            done += len(batch)
            if progress is not None:
                progress(done, len(ready))
        return report


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did (or, with `dry_run`, would do)."""

    schedule: str
    created: list[datetime]
    """Slots given a run now (with `dry_run`: that would be)."""
    existing: list[datetime]
    """Slots that already had a run (of any trigger): left alone."""
    skipped: list[datetime]
    """Slots the overlap policy refused (not written; `force` overrides)."""
    execution_ids: list[uuid.UUID]
    """The runs created, in slot order (empty for a dry run)."""
    dry_run: bool = False


BACKFILL_PUBLISH_BATCH = 100


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy's `postgresql+asyncpg://` URL as a plain libpq-style DSN for asyncpg."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class ChangeListener:
    """LISTEN on the schedules channel; every notification calls `on_change` at once."""

    def __init__(self, url: str, on_change: Callable[[], None]) -> None:
        self.dsn = asyncpg_dsn(url)
        self.on_change = on_change
        self._connection: Any = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> bool:
        """Connect if needed; True when a new connection was made (changes may have been missed)."""
        if self.connected:
            return False
        await self.close()
        connection = await asyncpg.connect(self.dsn, timeout=5)
        await connection.add_listener(NOTIFY_CHANNEL, self._notified)
        self._connection = connection
        return True

    def _notified(self, *_: object) -> None:
        self.on_change()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)


class Wakeup:
    """A thread-safe alarm: the beat's main thread sleeps on it; NOTIFY and shutdown ring it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken early."""
        woken = self._event.wait(max(0.0, seconds))
        self._event.clear()
        return woken
