"""Runs an operator asks for: a manual trigger, the retry of a run, a backfill of a range.

Each is one transaction (lock the schedule or the run, judge with the planner's rules, write
the runs `pending`), then the runs are published and marked `queued`; what a failed publish
leaves `pending` goes out with the outbox sweep. The overlap policy judges them with the
planner's own rule (`overlap_decision`), unless `force`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.beat.delivery import Delivery
from scheduler.beat.messages import execution_values, sendable_options
from scheduler.core.backfill import backfill_slots, overlap_decisions
from scheduler.core.cron import Timing
from scheduler.core.domain import ExecutionStatus, OverlapPolicy, Trigger
from scheduler.core.exceptions import (
    ConflictError,
    ExecutionNotFound,
    InvalidScheduleError,
    ScheduleNotFound,
)
from scheduler.core.execution_ids import new_execution_id
from scheduler.core.planner import (
    DueSchedule,
    PlannedRun,
    due_schedule_from_mapping,
    make_run,
    overlap_decision,
    validate_row,
)
from scheduler.store.dispatch import DispatchStore
from scheduler.store.manual import ManualRunStore

RETRYABLE = frozenset(
    {
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.LOST,
        ExecutionStatus.REVOKED,
    }
)
"""The outcomes a run can be retried from (as a new run, trigger `retry`)."""
BACKFILL_PUBLISH_BATCH = 100
_UNREACHABLE = "broker unreachable: the beat's sweep will publish it"


@dataclass(frozen=True)
class TriggerResult:
    execution_id: uuid.UUID
    status: ExecutionStatus
    """`queued` when published, `skipped` when the overlap policy refused it."""
    reason: str | None = None


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


class ManualRuns:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        delivery: Delivery,
        registered: frozenset[str] | None,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.delivery = delivery
        self.registered = registered
        self.settings = settings

    async def _sent(self, run: PlannedRun) -> TriggerResult:
        published = await self.delivery.publish_and_mark([run])
        return TriggerResult(
            run.id,
            ExecutionStatus.QUEUED if published else ExecutionStatus.PENDING,
            None if published else _UNREACHABLE,
        )

    async def _lock(self, session: AsyncSession, name: str) -> DueSchedule:
        values = await ManualRunStore.lock_schedule_for_trigger(session, name)
        if values is None:
            raise ScheduleNotFound(name)
        return due_schedule_from_mapping(values)

    def _check(self, row: DueSchedule, name: str) -> Timing:
        try:
            return validate_row(row, self.registered)
        except InvalidScheduleError as exc:
            raise InvalidScheduleError(f"schedule {name!r} cannot run: {exc}") from None

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
            row = await self._lock(session, name)
            if args is not None:
                row = dataclasses.replace(row, args=args)
            if kwargs is not None:
                row = dataclasses.replace(row, kwargs=kwargs)
            self._check(row, name)
            overlap = OverlapPolicy(row.overlap_policy)
            fires, held = overlap_decision(
                OverlapPolicy.ALLOW if force else overlap, row.active_runs, row.waiting_runs
            )
            status = ExecutionStatus.PENDING if fires else ExecutionStatus.SKIPPED
            run = make_run(row, None, Trigger.MANUAL, status, held=held)
            await DispatchStore.insert_executions(session, [execution_values(run, now)])
        if not fires:
            return TriggerResult(
                run.id,
                ExecutionStatus.SKIPPED,
                f"overlap policy {overlap.value}: a run is still in progress (use --force)",
            )
        if held:
            return TriggerResult(
                run.id,
                ExecutionStatus.PENDING,
                "overlap policy buffer_one: it starts when the run in progress has finished",
            )
        return await self._sent(run)

    async def retry(self, execution_id: uuid.UUID, *, now: datetime) -> TriggerResult:
        """A new run made from the earlier run `execution_id` (trigger `retry`): the same
        task, args, kwargs and schedule, `parent_id` the earlier run, `root_id` the earlier
        run's root (or the earlier run itself), no slot. Written `pending`, committed, then
        published and marked `queued` (the outbox sweep publishes it if the broker is down).

        Only a run of a schedule that ended failed, timed out, lost or revoked can be retried
        (others raise ConflictError); an operator's explicit request, so the overlap policy
        does not judge it. Raises NotFoundError for an unknown id."""
        async with self.sessions() as session, session.begin():
            earlier = await ManualRunStore.lock_run_for_retry(session, execution_id)
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
            options = sendable_options(earlier["options"], "retry of", execution_id)
            new_id = new_execution_id()
            kwargs = dict(earlier["kwargs"] or {})
            kwargs["execution_id"] = str(new_id)
            run = PlannedRun(
                id=new_id,
                schedule_id=earlier["schedule_id"],
                task=earlier["task"],
                args=list(earlier["args"] or []),
                kwargs=kwargs,
                options=options,
                trigger=Trigger.RETRY,
                scheduled_for=None,
                status=ExecutionStatus.PENDING,
            )
            values = execution_values(run, now)
            values["parent_id"] = execution_id
            values["root_id"] = earlier["root_id"] or execution_id
            await DispatchStore.insert_executions(session, [values])
        return await self._sent(run)

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
            row = await self._lock(session, name)
            timing = self._check(row, name)
            if end < start:
                raise InvalidScheduleError("--to is before --from")
            slots = (
                []
                if start > now
                else backfill_slots(
                    row, timing, start, min(end, now), limit=self.settings.backfill_max
                )
            )
            existing = await ManualRunStore.existing_slots(session, row.id, slots)
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
                    session, [execution_values(r, now) for r in runs]
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
            await self.delivery.publish_and_mark(batch)
            done += len(batch)
            if progress is not None:
                progress(done, len(ready))
        return report
