"""Backfill: the slots a range holds, and how the overlap policy judges runs made at once.

Pure, like the planner whose rules it follows (`scheduler.core.planner`); the beat's
`scheduler.beat.trigger` writes what comes out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from scheduler.core.cron import Timing, first_interval_fire, interval_microseconds, next_fire
from scheduler.core.domain import OverlapPolicy
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.planner import DueSchedule, overlap_decision


def backfill_slots(
    row: DueSchedule, timing: Timing, start: datetime, end: datetime, *, limit: int
) -> list[datetime]:
    """The schedule's slots at or after `start` and at or before `end` (within its own
    `start_at`/`end_at`), oldest first. More than `limit` raises InvalidScheduleError.

    An interval schedule's grid is anchored where the beat anchored it: `start_at`, else its
    `next_run_at` or `last_run_at` (slots the beat computed), else `start` itself."""
    if end < start:
        raise InvalidScheduleError("--to is before --from")
    if row.start_at is not None:
        start = max(start, row.start_at)
    if row.end_at is not None:
        end = min(end, row.end_at)
    slots: list[datetime] = []
    if timing.run_at is not None:
        return [timing.run_at] if start <= timing.run_at <= end else []
    anchor: datetime | None = None
    if timing.interval_seconds is not None:
        anchor = row.start_at or row.next_run_at or row.last_run_at or start
        step = timedelta(microseconds=interval_microseconds(timing.interval_seconds))
        if anchor > start:
            anchor -= step * -(-(anchor - start) // step)
        slot: datetime | None = first_interval_fire(anchor, timing.interval_seconds, start)
    else:
        slot = next_fire(timing, start - timedelta(microseconds=1))
    while slot is not None and slot <= end:
        if len(slots) >= limit:
            raise InvalidScheduleError(
                f"the range holds more than {limit} slots (SCHEDULER_BACKFILL_MAX): "
                "narrow --from/--to or backfill in parts"
            )
        slots.append(slot)
        slot = next_fire(timing, slot, anchor=anchor or slot)
    return slots


def overlap_decisions(
    policy: OverlapPolicy, active: int, waiting: int, count: int
) -> list[tuple[bool, bool]]:
    """For `count` runs made at once (a backfill): (fires, held) of each, in order, as the
    overlap policy judges them given the schedule's runs in progress."""
    decisions: list[tuple[bool, bool]] = []
    for _ in range(count):
        fires, held = overlap_decision(policy, active, waiting)
        decisions.append((fires, held))
        if fires:
            active += 1
            waiting += 1
    return decisions
