"""What to fire: pure decisions over due schedule rows, with `now` passed in.

The beat's engine loads due rows (locked), hands them here, and writes back what comes out:
executions to insert (each a slot, whose run has an id derived from `(schedule_id,
scheduled_for)`, so two beats planning the same slot insert it once) and one update per schedule.

Rules:
- a slot within grace (`misfire_grace_seconds`, else the global default) fires with trigger
  `schedule`; older slots are misfires: `run_once` fires one `catchup` run, `skip` records
  one `missed` row, `run_all` fires each missed slot (at most `max_catchup`);
- overlap (`overlap_decision`, for manual and backfilled runs too): `allow` fires; `skip`
  records `skipped` while a run of the schedule is not terminal; `buffer_one` lets one run
  wait behind the running one (written, held back unpublished until that run's outcome is
  written), and skips the rest;
- `end_at` and `max_runs` end a schedule's life (disabled, `next_run_at` NULL);
- jitter delays the message by a per-slot deterministic offset (`countdown`), so every beat
  agrees and the slot's nominal time stays `scheduled_for`;
- with a `horizon` past `now`, slots of `allow` schedules up to the horizon are planned ahead
  (the engine holds them until their time); lateness is always measured against `now`,
  and rows with an overlap guard are only planned when due, so the guard sees the present;
- a row that cannot run gets `last_error` and no `next_run_at`; others are unaffected.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from scheduler.core.bounds import min_interval_s
from scheduler.core.cron import (
    Timing,
    first_interval_fire,
    make_timing,
    next_fire,
)
from scheduler.core.definitions import check_interval_floor, check_json_fields
from scheduler.core.domain import ExecutionStatus, MisfirePolicy, OverlapPolicy, Trigger
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.execution_ids import new_execution_id, slot_execution_id
from scheduler.core.options import check_options

_MAX_SLOTS_PER_TICK = 10_000


@dataclass(frozen=True)
class PlannerSettings:
    default_grace_s: int = 60
    max_catchup: int = 100


@dataclass(frozen=True)
class DueSchedule:
    """A snapshot of a locked `schedules` row plus the state of its runs."""

    id: int
    name: str
    task: str
    cron: str | None
    interval_seconds: Decimal | None
    run_at: datetime | None
    timezone: str
    args: Any
    kwargs: Any
    options: Any
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None
    misfire_policy: str
    misfire_grace_seconds: int | None
    overlap_policy: str
    jitter_seconds: int
    next_run_at: datetime | None
    total_run_count: int
    last_run_at: datetime | None = None
    active_runs: int = 0
    """Runs of this schedule that are not terminal (pending, queued, running, retrying)."""
    waiting_runs: int = 0
    """Runs of this schedule not yet started (pending, queued)."""
    day_match: str = "any"
    """How a cron's day of month and day of week combine: `any` (POSIX) or `all` (Celery)."""


@dataclass(frozen=True)
class PlannedRun:
    id: uuid.UUID
    schedule_id: int
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    trigger: Trigger
    scheduled_for: datetime | None
    status: ExecutionStatus
    countdown_s: float = 0.0
    held: bool = False
    """A `buffer_one` run waiting behind the run in progress: written `pending` but not
    published; the outcome of the run before it releases it (see `scheduler.worker.followup`)."""

    @property
    def fires(self) -> bool:
        """A run that will run (now or, when held, after the run before it)."""
        return self.status is ExecutionStatus.PENDING

    @property
    def publishes(self) -> bool:
        return self.status is ExecutionStatus.PENDING and not self.held


@dataclass(frozen=True)
class ScheduleUpdate:
    id: int
    next_run_at: datetime | None
    last_run_at: datetime | None = None
    runs_added: int = 0
    enabled: bool = True
    last_error: str | None = None


@dataclass(frozen=True)
class Plan:
    runs: list[PlannedRun] = field(default_factory=list)
    updates: list[ScheduleUpdate] = field(default_factory=list)


_MISFIRE_POLICIES = {p.value: p for p in MisfirePolicy}
_OVERLAP_POLICIES = {p.value: p for p in OverlapPolicy}
"""By value: a dict lookup, not an enum call, per planned row."""


def jitter_s(schedule_id: int, slot: datetime, jitter_seconds: int) -> float:
    """Deterministic delay in [0, jitter_seconds) for one slot, the same in every beat."""
    if jitter_seconds <= 0:
        return 0.0
    digest = hashlib.blake2b(f"{schedule_id}:{slot.isoformat()}".encode(), digest_size=8)
    fraction = int.from_bytes(digest.digest(), "big") / 2**64
    return round(fraction * jitter_seconds, 3)


def validate_row(
    row: DueSchedule, registered: frozenset[str] | None, *, floor: float | None = None
) -> Timing:
    """Everything that makes a row unrunnable, as InvalidScheduleError with one line.
    `floor` is the shortest interval allowed (read from the environment when None)."""
    if registered is not None and row.task not in registered:
        raise InvalidScheduleError(f"task {row.task!r} is not registered with the beat's app")
    check_json_fields(row.args, row.kwargs, row.options)
    if not isinstance(row.args, list):
        raise InvalidScheduleError("args must be a JSON array")
    if not isinstance(row.kwargs, dict):
        raise InvalidScheduleError("kwargs must be a JSON object")
    if not isinstance(row.options, dict):
        raise InvalidScheduleError("options must be a JSON object")
    if row.options:
        check_options(row.options)
    check_interval_floor(row.interval_seconds, floor)
    if row.misfire_policy not in _MISFIRE_POLICIES:
        raise InvalidScheduleError(f"unknown misfire_policy {row.misfire_policy!r}")
    if row.overlap_policy not in _OVERLAP_POLICIES:
        raise InvalidScheduleError(f"unknown overlap_policy {row.overlap_policy!r}")
    return make_timing(
        cron=row.cron,
        interval_seconds=row.interval_seconds,
        run_at=row.run_at,
        timezone=row.timezone,
        name=row.name,
        day_match=row.day_match,
    )


def first_slot(
    row: DueSchedule, timing: Timing, now: datetime, grace: timedelta
) -> datetime | None:
    """Where a row that has no `next_run_at` yet starts: an interval grid's latest slot when
    it is within grace (a row inserted just after its start still fires it), else the next."""
    if timing.interval_seconds is not None:
        anchor = row.start_at or now
        upcoming = first_interval_fire(anchor, timing.interval_seconds, now)
        previous = upcoming - timedelta(seconds=float(timing.interval_seconds))
        if anchor <= previous <= now and now - previous <= grace:
            return previous
        return upcoming
    if timing.run_at is not None:
        return timing.run_at
    after = max(now, row.start_at) if row.start_at else now
    return next_fire(timing, after - timedelta(microseconds=1))


def plan(
    rows: Iterable[DueSchedule],
    *,
    now: datetime,
    registered: frozenset[str] | None,
    settings: PlannerSettings,
    horizon: datetime | None = None,
    first_horizon: datetime | None = None,
) -> Plan:
    """Runs and schedule updates for due rows. `allow` rows are planned up to `horizon`;
    rows seen for the first time (no `next_run_at`) up to `first_horizon` when it is later
    (see `scheduler.core.writeahead.first_sight_s`)."""
    result = Plan()
    floor = min_interval_s()  # once a batch: the environment is not read per row
    first = (
        horizon
        if first_horizon is None or (horizon is not None and horizon >= first_horizon)
        else first_horizon
    )
    for row in rows:
        try:
            runs, update = plan_row(
                row,
                now=now,
                registered=registered,
                settings=settings,
                horizon=horizon if row.next_run_at is not None else first,
                floor=floor,
            )
        except Exception as exc:  # a value no check foresaw: this row stops, not the batch
            runs, update = _flagged(row, f"cannot be planned: {type(exc).__name__}: {exc}")
        result.runs.extend(runs)
        result.updates.append(update)
    return result


def plan_row(
    row: DueSchedule,
    *,
    now: datetime,
    registered: frozenset[str] | None,
    settings: PlannerSettings,
    horizon: datetime | None = None,
    floor: float | None = None,
) -> tuple[list[PlannedRun], ScheduleUpdate]:
    try:
        timing = validate_row(row, registered, floor=floor)
    except InvalidScheduleError as exc:
        return _flagged(row, str(exc))
    slot = row.next_run_at
    if slot is None:
        slot = first_slot(row, timing, now, _grace(row, settings))
    if slot is None or _ended(row, slot, row.total_run_count):
        return [], ScheduleUpdate(
            id=row.id, next_run_at=None, last_run_at=row.last_run_at, enabled=False
        )
    until = plans_until(row, now, horizon)
    if slot > until:
        return [], ScheduleUpdate(id=row.id, next_run_at=slot, last_run_at=row.last_run_at)
    return _fire_due(row, timing, slot, now, until, settings)


def _flagged(row: DueSchedule, error: str) -> tuple[list[PlannedRun], ScheduleUpdate]:
    """No runs; the row keeps `error` and no `next_run_at` until someone edits it."""
    return [], ScheduleUpdate(
        id=row.id, next_run_at=None, last_run_at=row.last_run_at, last_error=error
    )


def plans_until(row: DueSchedule, now: datetime, horizon: datetime | None) -> datetime:
    """The latest slot this row may be planned for now: the horizon for `allow` rows, else
    `now` (an overlap guard must judge the runs in progress when the slot comes)."""
    if horizon is None or horizon <= now or row.overlap_policy != OverlapPolicy.ALLOW.value:
        return now
    return horizon


def _grace(row: DueSchedule, settings: PlannerSettings) -> timedelta:
    seconds = row.misfire_grace_seconds
    return timedelta(seconds=settings.default_grace_s if seconds is None else seconds)


def _ended(row: DueSchedule, slot: datetime, runs: int) -> bool:
    if row.end_at is not None and slot > row.end_at:
        return True
    return row.max_runs is not None and runs >= row.max_runs


def _fire_due(
    row: DueSchedule,
    timing: Timing,
    first: datetime,
    now: datetime,
    until: datetime,
    settings: PlannerSettings,
) -> tuple[list[PlannedRun], ScheduleUpdate]:
    """Slots from `first` up to `until` (>= now); those later than grace before `now` missed."""
    grace = _grace(row, settings)
    missed: list[datetime] = []
    on_time: list[datetime] = []
    slot: datetime | None = first
    steps = 0
    while slot is not None and slot <= until and steps < _MAX_SLOTS_PER_TICK:
        if row.end_at is not None and slot > row.end_at:
            slot = None
            break
        (on_time if now - slot <= grace else missed).append(slot)
        slot = next_fire(timing, slot, anchor=slot)
        steps += 1
        if len(missed) > settings.max_catchup and slot is not None and now - slot > grace:
            # a long outage: jump over the slots nobody will run, straight to the grace window
            slot = _skip_ahead(timing, slot, now - grace)
    if slot is not None and slot <= until:
        slot = next_fire(timing, until, anchor=slot)

    fires: list[tuple[datetime, Trigger]] = []
    recorded_missed: list[datetime] = []
    policy = _MISFIRE_POLICIES[row.misfire_policy]
    if missed:
        if policy is MisfirePolicy.RUN_ONCE:
            fires.append((missed[-1], Trigger.CATCHUP))
        elif policy is MisfirePolicy.SKIP:
            recorded_missed.append(missed[-1])
        else:
            fires.extend((s, Trigger.CATCHUP) for s in missed[-settings.max_catchup :])
    fires.extend((s, Trigger.SCHEDULE) for s in on_time[-settings.max_catchup :])

    runs: list[PlannedRun] = [
        make_run(row, s, Trigger.CATCHUP, ExecutionStatus.MISSED) for s in recorded_missed
    ]
    active, waiting = row.active_runs, row.waiting_runs
    overlap = _OVERLAP_POLICIES[row.overlap_policy]
    fired = 0
    last_fired: datetime | None = None
    total = row.total_run_count
    for s, trigger in fires:
        if row.max_runs is not None and total + fired >= row.max_runs:
            slot = None
            break
        admitted, held = overlap_decision(overlap, active, waiting)
        if not admitted:
            runs.append(make_run(row, s, trigger, ExecutionStatus.SKIPPED))
            continue
        runs.append(make_run(row, s, trigger, ExecutionStatus.PENDING, held=held))
        fired += 1
        active += 1
        waiting += 1
        last_fired = s

    ended = (
        slot is None
        or (row.end_at is not None and slot > row.end_at)
        or (row.max_runs is not None and total + fired >= row.max_runs)
    )
    update = ScheduleUpdate(
        id=row.id,
        next_run_at=None if ended else slot,
        last_run_at=last_fired or row.last_run_at,
        runs_added=fired,
        enabled=not ended,
    )
    return runs, update


def _skip_ahead(timing: Timing, slot: datetime, target: datetime) -> datetime | None:
    """The first slot at or after `target`, from a slot before it, without walking each one."""
    if timing.interval_seconds is not None:
        return first_interval_fire(slot, timing.interval_seconds, target)
    return next_fire(timing, target - timedelta(microseconds=1), anchor=slot)


def make_run(
    row: DueSchedule,
    slot: datetime | None,
    trigger: Trigger,
    status: ExecutionStatus,
    *,
    held: bool = False,
) -> PlannedRun:
    """A run of `row` for `slot` (None: a manual run, no slot and no jitter); a run to publish
    carries its execution id in kwargs. `held`: a buffered run, published later."""
    execution_id = new_execution_id() if slot is None else slot_execution_id(row.id, slot)
    kwargs = dict(row.kwargs)
    if status is ExecutionStatus.PENDING:
        kwargs["execution_id"] = str(execution_id)
    return PlannedRun(
        id=execution_id,
        schedule_id=row.id,
        task=row.task,
        args=list(row.args),
        kwargs=kwargs,
        options=dict(row.options),
        trigger=trigger,
        scheduled_for=slot,
        status=status,
        countdown_s=0.0 if slot is None else jitter_s(row.id, slot, row.jitter_seconds),
        held=held,
    )


def due_schedule_from_mapping(values: Mapping[str, Any]) -> DueSchedule:
    """Build a snapshot from a row mapping (column name -> value)."""
    names = DueSchedule.__dataclass_fields__
    return DueSchedule(**{k: v for k, v in values.items() if k in names})


def overlap_decision(policy: OverlapPolicy, active: int, waiting: int) -> tuple[bool, bool]:
    """(fires, held) of one new run, given the schedule's runs not terminal (`active`) and
    not yet started (`waiting`): `skip` refuses it while a run is active, `buffer_one` holds
    it behind the active one unless one already waits (then refuses it), `allow` fires it.
    The one overlap rule of slots, manual triggers and backfills."""
    if policy is OverlapPolicy.SKIP and active > 0:
        return False, False
    if policy is OverlapPolicy.BUFFER_ONE and active > 0:
        admitted = waiting <= 0
        return admitted, admitted
    return True, False
