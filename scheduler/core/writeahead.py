"""How far ahead the beat writes runs: sized by the work coming, not a constant.

Runs of `allow` schedules are written ahead and held until their slot (see
`scheduler.core.held`). Writing takes time in proportion to the rows to write, so a fixed lead
works only while the rows due at one instant can be written within it. Instead, the beat
looks at the rows due in the coming window (a count per short step of time, from an index
range scan) and at how fast it has been writing (measured per batch), and starts writing
each instant's rows early enough to finish with a margin: the rows due by an offset `t`
(counted from now, cumulatively, earliest first since batches go in due order) must start
being written by `t - lead(count)`, where

    lead(count) = count / rate * margin + base

and `base` is the configured minimum lead (`SCHEDULER_BEAT_LOOKAHEAD_S`). From the lead and
what is due (`Outlook`), `wake_at` decides when the beat's next pass has work. Pure: no I/O,
no clock reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

MARGIN = 2.0
"""Writing is planned to take this many times its measured duration."""
INITIAL_ROWS_PER_S = 2_000.0
"""The write rate assumed before the first measurement: deliberately low, so a beat that
meets a burst before it has measured anything starts early rather than late."""
MIN_SAMPLE_ROWS = 100
"""Batches smaller than this are not measured (their fixed costs would dominate)."""
SMOOTHING = 0.3
"""Weight of the newest batch in the rate's moving average."""


@dataclass(frozen=True)
class Lead:
    """What the coming window asks of the beat."""

    start_in_s: float | None
    """Seconds from now until writing must start (zero or less: now); None when no `allow`
    row is due in the window."""
    horizon_s: float
    """When writing: rows due within this many seconds from now are written now."""


def lead(
    profile: Sequence[tuple[float, int]],
    *,
    step_s: float,
    rows_per_s: float,
    base_s: float,
    max_s: float,
    margin: float = MARGIN,
) -> Lead:
    """The lead for a window described by `profile`: (end of a step of `step_s` seconds as
    an offset from now, rows due in that step), in ascending offset; rows already due fall in
    steps ending at or before zero. A step's rows are taken to fall due at its start (the
    earliest they can), and are written whole. The horizon is at least `base_s`, at most
    `max_s`."""
    rate = max(rows_per_s, 1.0)
    cumulative = 0
    start: float | None = None
    horizon = base_s
    for offset, count in profile:
        if offset - step_s > max_s:
            break
        cumulative += count
        must_start = offset - step_s - (cumulative / rate * margin + base_s)
        start = must_start if start is None else min(start, must_start)
        if must_start <= 0:
            horizon = max(horizon, offset)
    return Lead(start_in_s=start, horizon_s=min(horizon, max_s))


def first_sight_s(
    uncomputed: int, *, rows_per_s: float, base_s: float, max_s: float, margin: float = MARGIN
) -> float:
    """How far ahead the first slots of rows seen for the first time (no `next_run_at` yet)
    are written, in the pass that computes them. Their slots are unknown until each row is
    planned, so they are taken as due at once: writing `uncomputed` rows takes
    `uncomputed / rate`, and a row whose first slot falls within that lead (with the margin,
    plus `base_s`) is written now rather than locked and planned a second time when its
    lead comes. One new row keeps the least lead; 100k rows inserted at once are written in
    the pass that finds them, up to `max_s` ahead."""
    if base_s <= 0 or uncomputed <= 0:
        return max(base_s, 0.0)
    return min(max_s, uncomputed / max(rows_per_s, 1.0) * margin + base_s)


class WriteRate:
    """Rows the beat writes per second (lock, plan, insert, update, commit), as a moving
    average over batches."""

    def __init__(self, initial: float = INITIAL_ROWS_PER_S) -> None:
        self.rows_per_s = initial
        self.measured = False

    def record(self, rows: int, seconds: float) -> None:
        if rows < MIN_SAMPLE_ROWS or seconds <= 0:
            return
        sample = rows / seconds
        if not self.measured:
            self.rows_per_s, self.measured = sample, True
        else:
            self.rows_per_s += SMOOTHING * (sample - self.rows_per_s)


class Outlook(Protocol):
    """What is due in the window the beat looks at (the store's `DueOutlook`)."""

    @property
    def uncomputed(self) -> bool: ...
    @property
    def earliest(self) -> datetime | None: ...
    @property
    def allow_within(self) -> datetime | None: ...
    @property
    def guarded_within(self) -> datetime | None: ...


def horizon_s(sized: Lead, *, held: int, held_max: int) -> float:
    """How far ahead the next pass writes: the sized lead, or nothing ahead while the beat
    already holds `held_max` runs."""
    return 0.0 if held >= held_max else sized.horizon_s


def wake_at(
    outlook: Outlook,
    now: datetime,
    *,
    sized: Lead,
    lookahead: timedelta,
    window: timedelta,
    next_held_at: datetime | None,
) -> datetime | None:
    """When the next pass has work: when writing the `allow` rows of the window must start
    (their slot minus the sized lead), a guarded row's slot, the next held run's time, or
    when the earliest row beyond the window enters it; at once when a row has no slot yet."""
    candidates: list[datetime] = []
    if outlook.uncomputed:
        candidates.append(datetime.min.replace(tzinfo=UTC))
    if outlook.earliest is not None and outlook.earliest > now + window:
        candidates.append(outlook.earliest - window)
    if outlook.allow_within is not None:
        start_in = sized.start_in_s
        candidates.append(
            now + timedelta(seconds=start_in)
            if start_in is not None
            else outlook.allow_within - lookahead
        )
    if outlook.guarded_within is not None:
        candidates.append(outlook.guarded_within)
    if next_held_at is not None:
        candidates.append(next_held_at)
    return min(candidates) if candidates else None
