"""Fire-time math for cron, interval and one-off schedules. Pure: no I/O, `after` passed in.

Cron is evaluated by this module's own matcher on the schedule's local wall clock and mapped
to UTC with Vixie cron's DST rules, which depend on whether a job is *wildcard* or
*fixed-time*:

- a job is wildcard when its minute or hour field holds a `*` (`*`, `*/15`, `0,*/20`). It
  fires at every real instant whose wall time matches: in both passes of a fall-back hour,
  and not at all for wall times that a spring-forward gap skips;
- every other job is fixed-time. A wall time inside a spring-forward gap fires once, at the
  first instant after the gap (several missing wall times collapse into that one instant);
  a wall time that occurs twice fires once, in its first pass.

The fields themselves (Vixie rules, `H`, `L`, `W`, `#`, seconds) are read by
`scheduler.core.cron_fields`; this module finds the times they match and says whether an
expression ever fires.

Interval schedules are a fixed grid `anchor + k * interval` in real elapsed time.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.core.cron_fields import (
    ALIASES,
    DAY_MATCHES,
    CronSpec,
    DaySpec,
    never_reason,
    parse_fields,
)
from scheduler.core.domain import LONGEST_SECONDS
from scheduler.core.exceptions import InvalidScheduleError

__all__ = [
    "ALIASES",
    "DAY_MATCHES",
    "CronSpec",
    "DaySpec",
    "Timing",
    "first_interval_fire",
    "interval_microseconds",
    "make_timing",
    "next_cron_fire",
    "next_fire",
    "next_fire_times",
    "next_interval_fire",
    "next_wall",
    "parse_cron",
    "validate_cron",
    "validate_timezone",
]

_SEARCH_MONTHS = 12 * 401
"""The Gregorian calendar repeats every 400 years, weekdays included: a match exists within
that many months or never."""


def parse_cron(expr: str, name: str | None = None, day_match: str = "any") -> CronSpec:
    """Parse and validate `expr`; raises InvalidScheduleError with a one-line reason.

    `name` is the schedule name `H` is hashed from; `day_match` is `any` (POSIX: day of
    month OR day of week when both are restricted) or `all` (both, as Celery's crontab).
    Cached; the name is part of the key only when the expression can hold an `H`, so many
    schedules sharing one expression share one parse."""
    return _parse_cron(expr, name if "h" in expr.lower() else None, day_match)


@lru_cache(maxsize=8192)
def _parse_cron(expr: str, name: str | None, day_match: str) -> CronSpec:
    spec = parse_fields(expr, name, day_match)
    if next_wall(spec, datetime(2000, 1, 1)) is None:
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: never fires: {never_reason(spec)}"
        )
    return spec


def validate_cron(expr: str, name: str | None = "", day_match: str = "any") -> None:
    parse_cron(expr, name, day_match)


@lru_cache(maxsize=65536)
def _day_set(days: DaySpec, year: int, month: int) -> tuple[int, ...]:
    """The days of `year-month` that fire."""
    first_weekday, length = calendar.monthrange(year, month)
    first_cron = (first_weekday + 1) % 7  # cron counts Sunday as 0
    weekdays: set[int] = set()
    if days.dom_last_weekday:
        back = {5: 1, 6: 2}.get((first_weekday + length - 1) % 7, 0)
        weekdays.add(length - back)
    for n in days.dom_nearest_weekday:
        if n > length:
            continue
        weekday = (first_weekday + n - 1) % 7
        if weekday == 5:
            weekdays.add(n - 1 if n > 1 else n + 2)
        elif weekday == 6:
            weekdays.add(n + 1 if n < length else n - 2)
        else:
            weekdays.add(n)
    result = []
    for day in range(1, length + 1):
        dom = (
            day in days.dom
            or day in weekdays
            or (days.dom_last and day == length)
            or any(day >= first and (day - first) % step == 0 for first, step in days.dom_to_last)
        )
        wd = (first_cron + day - 1) % 7
        dow = (
            wd in days.dow
            or (wd in days.dow_last and day + 7 > length)
            or (wd, (day - 1) // 7 + 1) in days.dow_nth
        )
        both = days.match_all or days.dom_star or days.dow_star
        if (dom and dow) if both else (dom or dow):
            result.append(day)
    return tuple(result)


def _time_at_or_after(spec: CronSpec, h: int, m: int, s: int) -> tuple[int, int, int] | None:
    hours, minutes, seconds = spec.hours, spec.minutes, spec.seconds
    i = bisect_left(hours, h)
    if i == len(hours):
        return None
    if hours[i] == h:
        j = bisect_left(minutes, m)
        if j < len(minutes):
            if minutes[j] == m:
                k = bisect_left(seconds, s)
                if k < len(seconds):
                    return h, m, seconds[k]
                j += 1
            if j < len(minutes):
                return h, minutes[j], seconds[0]
        i += 1
        if i == len(hours):
            return None
    return hours[i], minutes[0], seconds[0]


def next_wall(spec: CronSpec, after: datetime) -> datetime | None:
    """The first naive wall time strictly after naive `after` that matches, or None."""
    if spec.has_seconds:
        t = after.replace(microsecond=0) + timedelta(seconds=1)
    else:
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    year, month, day = t.year, t.month, t.day
    h, m, s = t.hour, t.minute, t.second
    months = spec.months
    for _ in range(_SEARCH_MONTHS):
        if month not in months:
            i = bisect_left(months, month)
            if i == len(months):
                year, month = year + 1, months[0]
            else:
                month = months[i]
            day, h, m, s = 1, 0, 0, 0
            continue
        if year > 9999:
            return None
        days = _day_set(spec.days, year, month)
        for candidate in days[bisect_left(days, day) :]:
            if candidate != day:
                h, m, s = 0, 0, 0
            found = _time_at_or_after(spec, h, m, s)
            if found is not None:
                return datetime(year, month, candidate, *found)
            h, m, s = 0, 0, 0
            day = candidate + 1
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        day, h, m, s = 1, 0, 0, 0
    return None


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


def _instants(wall: datetime, tz: ZoneInfo, wildcard: bool) -> list[datetime]:
    """The UTC instants at which naive local `wall` fires, by the DST rules above."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    first_utc = first.astimezone(UTC)
    if first_utc.astimezone(tz).replace(tzinfo=None) != wall:
        return [] if wildcard else [_gap_end(wall, tz)]
    if first.utcoffset() != second.utcoffset():
        second_utc = second.astimezone(UTC)
        return [first_utc, second_utc] if wildcard else [first_utc]
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


def next_cron_fire(spec: CronSpec, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire instant strictly after `after` (UTC, aware)."""
    after = _utc(after)
    local = after.astimezone(tz)
    local_after = local.replace(tzinfo=None)
    start = horizon = local_after
    if spec.wildcard and local.fold == 0:
        # in the first pass of a repeated hour, the second pass of earlier wall times
        # comes before the first pass of later ones
        other = local_after.replace(tzinfo=tz, fold=1).utcoffset()
        this = local.utcoffset()
        assert other is not None
        assert this is not None
        if this > other:
            start, horizon = local_after - (this - other), local_after + (this - other)
    best: datetime | None = None
    wall: datetime | None = start
    while wall is not None:
        wall = next_wall(spec, wall)
        if wall is None:
            break
        for instant in _instants(wall, tz, spec.wildcard):
            if instant > after and (best is None or instant < best):
                best = instant
        if best is not None and wall >= horizon:
            return best
    if best is not None:
        return best
    raise InvalidScheduleError(f"cron expression {spec.expr!r} never fires after {after:%Y-%m-%d}")


def next_fire_times(
    expr: str,
    tz: str,
    after: datetime,
    count: int,
    *,
    name: str | None = None,
    day_match: str = "any",
) -> list[datetime]:
    """The next `count` fire instants of a cron expression, strictly after `after`, in UTC."""
    spec = parse_cron(expr, name, day_match)
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
    name: str | None = "",
    day_match: str = "any",
) -> Timing:
    """Validate the kind fields of a schedule; exactly one of cron / interval / run_at.
    Cached (the name matters only to a cron's `H`): a burst plans 10k rows a pass."""
    return _timing(cron, interval_seconds, run_at, timezone, name if cron else None, day_match)


@lru_cache(maxsize=4096)
def _timing(
    cron: str | None,
    interval_seconds: Decimal | float | int | None,
    run_at: datetime | None,
    timezone: str,
    name: str | None,
    day_match: str,
) -> Timing:
    given = [x is not None for x in (cron, interval_seconds, run_at)]
    if sum(given) != 1:
        raise InvalidScheduleError("give exactly one of cron, interval_seconds or run_at")
    tz = validate_timezone(timezone)
    spec = parse_cron(cron, name, day_match) if cron is not None else None
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
