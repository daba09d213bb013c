"""Fire-time math for cron, interval and one-off schedules. Pure: no I/O, `after` passed in.

Cron is evaluated on the schedule's local wall clock (croniter on naive local times) and
mapped to UTC with these DST rules:

- spring forward: a wall time that does not exist fires once, at the first instant after
  the gap (several missing wall times collapse into that one instant);
- fall back: a wall time that occurs twice fires once (the first occurrence) when the hour
  field is fixed, and in both passes when the hour field is `*` or a step (`*/2`, `1-5/2`),
  because such a job means "every real interval".

Six fields means seconds first (`*/10 * * * * *` is every ten seconds), as in Quartz.
Interval schedules are a fixed grid `anchor + k * interval` in real elapsed time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from scheduler.domain import LONGEST_SECONDS
from scheduler.exceptions import InvalidScheduleError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FOLD_WINDOW = timedelta(hours=3)
"""Wider than any DST shift in the tz database (at most two hours)."""
_MAX_ITERATIONS = 100_000


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: croniter's form plus what the DST rules need to know."""

    expr: str
    croniter_expr: str
    has_seconds: bool
    hour_repeats: bool
    """True when the hour field is `*` or a step: such a job fires in both fall-back passes."""


@lru_cache(maxsize=8192)
def parse_cron(expr: str) -> CronSpec:
    """Parse and validate `expr`; raises InvalidScheduleError with a one-line reason."""
    text = " ".join(expr.split())
    if not text:
        raise InvalidScheduleError("empty cron expression")
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise InvalidScheduleError(
            f"unknown cron alias {expr!r}: use @hourly, @daily, @weekly, @monthly or @yearly"
        )
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidScheduleError(
            f"cron expression {expr!r} has {len(fields)} fields: use 5 "
            "(minute hour day month weekday) or 6 (second first)"
        )
    has_seconds = len(fields) == 6
    # croniter takes seconds as a sixth field at the end
    croniter_expr = " ".join([*fields[1:], fields[0]]) if has_seconds else text
    try:
        valid = croniter.is_valid(croniter_expr)
    except Exception:  # croniter raises assorted errors for odd input
        valid = False
    if not valid:
        raise InvalidScheduleError(f"invalid cron expression {expr!r}")
    hour = fields[2] if has_seconds else fields[1]
    return CronSpec(
        expr=text,
        croniter_expr=croniter_expr,
        has_seconds=has_seconds,
        hour_repeats=hour == "*" or "/" in hour,
    )


def validate_cron(expr: str) -> None:
    parse_cron(expr)


@lru_cache(maxsize=1024)
def validate_timezone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; raises InvalidScheduleError for anything else."""
    if not name or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name) or ".." in name:
        raise InvalidScheduleError(
            f"unknown time zone {name!r}: use an IANA name like Europe/London"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidScheduleError(
            f"unknown time zone {name!r}: use an IANA name like Europe/London"
        ) from None


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware instant")
    return dt.astimezone(UTC)


def _instants(wall: datetime, tz: ZoneInfo, both_passes: bool) -> list[datetime]:
    """The UTC instants at which naive local `wall` fires, by the DST rules above."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    first_utc = first.astimezone(UTC)
    if first_utc.astimezone(tz).replace(tzinfo=None) != wall:
        return [_gap_end(wall, tz)]
    if first.utcoffset() != second.utcoffset():
        second_utc = second.astimezone(UTC)
        return [first_utc, second_utc] if both_passes else [first_utc]
    return [first_utc]


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """First instant after the spring-forward gap that swallowed `wall`."""
    before = wall.replace(tzinfo=tz, fold=1).utcoffset()
    after = wall.replace(tzinfo=tz, fold=0).utcoffset()
    assert before is not None
    assert after is not None
    low = (wall - max(before, after)).replace(tzinfo=UTC)
    high = (wall - min(before, after)).replace(tzinfo=UTC)
    # the transition lies in (low, high]; offsets change on whole seconds
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        mid = mid.replace(microsecond=0)
        if mid <= low:
            mid = low + timedelta(seconds=1)
        if mid.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
            low = mid
        else:
            high = mid
    return high


def _near_fall_back(after: datetime, tz: ZoneInfo) -> bool:
    earlier = (after - _FOLD_WINDOW).astimezone(tz).utcoffset()
    later = (after + _FOLD_WINDOW).astimezone(tz).utcoffset()
    return earlier is not None and later is not None and earlier > later


def next_cron_fire(spec: CronSpec, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire instant strictly after `after` (UTC, aware)."""
    after = _utc(after)
    local_after = after.astimezone(tz).replace(tzinfo=None)
    look_back = spec.hour_repeats and _near_fall_back(after, tz)
    start = local_after - _FOLD_WINDOW if look_back else local_after
    horizon = local_after + _FOLD_WINDOW if look_back else start
    it = croniter(spec.croniter_expr, start)
    best: datetime | None = None
    for _ in range(_MAX_ITERATIONS):
        wall: datetime = it.get_next(datetime)
        for instant in _instants(wall, tz, spec.hour_repeats):
            if instant > after and (best is None or instant < best):
                best = instant
        if best is not None and wall > horizon:
            return best
    raise InvalidScheduleError(f"cron expression {spec.expr!r} never fires")


def next_fire_times(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants of a cron expression, strictly after `after`, in UTC."""
    spec = parse_cron(expr)
    zone = validate_timezone(tz)
    times: list[datetime] = []
    current = _utc(after)
    for _ in range(count):
        current = next_cron_fire(spec, zone, current)
        times.append(current)
    return times


@lru_cache(maxsize=4096)
def interval_microseconds(interval_seconds: Decimal | float | int) -> int:
    micros = int(Decimal(str(interval_seconds)) * 1_000_000)
    if micros <= 0:
        raise InvalidScheduleError("interval_seconds must be greater than zero")
    return micros


def next_interval_fire(anchor: datetime, interval_seconds: Decimal, after: datetime) -> datetime:
    """The first grid slot `anchor + k*interval` (k >= 0) strictly after `after`."""
    anchor = _utc(anchor)
    after = _utc(after)
    if after < anchor:
        return anchor
    step = interval_microseconds(interval_seconds)
    elapsed = (after - anchor) // timedelta(microseconds=1)
    k = elapsed // step + 1
    return anchor + timedelta(microseconds=k * step)


def first_interval_fire(anchor: datetime, interval_seconds: Decimal, now: datetime) -> datetime:
    """The first grid slot at or after `now` (the anchor itself when it is in the future)."""
    anchor = _utc(anchor)
    now = _utc(now)
    if now <= anchor:
        return anchor
    step = interval_microseconds(interval_seconds)
    elapsed = (now - anchor) // timedelta(microseconds=1)
    k = -(-elapsed // step)
    return anchor + timedelta(microseconds=k * step)


@dataclass(frozen=True)
class Timing:
    """The timing part of a schedule row, validated."""

    cron: CronSpec | None
    interval_seconds: Decimal | None
    run_at: datetime | None
    tz: ZoneInfo

    @property
    def kind(self) -> str:
        return "cron" if self.cron else "interval" if self.interval_seconds else "once"


def make_timing(
    *,
    cron: str | None,
    interval_seconds: Decimal | float | int | None,
    run_at: datetime | None,
    timezone: str,
) -> Timing:
    """Validate the kind fields of a schedule; exactly one of cron / interval / run_at."""
    given = [x is not None for x in (cron, interval_seconds, run_at)]
    if sum(given) != 1:
        raise InvalidScheduleError("give exactly one of cron, interval_seconds or run_at")
    tz = validate_timezone(timezone)
    spec = parse_cron(cron) if cron is not None else None
    interval = None
    if interval_seconds is not None:
        interval = Decimal(str(interval_seconds))
        if not interval.is_finite():
            raise InvalidScheduleError(f"interval_seconds must be a number, not {interval}")
        micros = interval_microseconds(interval)
        if micros < 1000:
            raise InvalidScheduleError("interval_seconds must be at least 0.001")
        if interval > LONGEST_SECONDS:
            raise InvalidScheduleError("interval_seconds must be at most ten years")
    return Timing(cron=spec, interval_seconds=interval, run_at=run_at, tz=tz)


def next_fire(
    timing: Timing, after: datetime, *, anchor: datetime | None = None
) -> datetime | None:
    """The next fire strictly after `after`; None when a one-off has nothing left."""
    if timing.cron is not None:
        return next_cron_fire(timing.cron, timing.tz, after)
    if timing.interval_seconds is not None:
        assert anchor is not None, "interval schedules need their grid anchor"
        return next_interval_fire(anchor, timing.interval_seconds, after)
    assert timing.run_at is not None
    return timing.run_at if _utc(timing.run_at) > _utc(after) else None
