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

Day of month and day of week combine as in Vixie cron when `day_match` is `any` (the
default): when both fields are restricted (neither starts with `*` or is `?`), a day
matching either fires; otherwise both must match. `day_match="all"` always requires both,
as Celery's crontab does.

Beyond POSIX fields: six fields mean seconds first (`*/10 * * * * *`), as in Quartz; `L`
(last day), `LW` (last weekday), `15W` (weekday nearest the 15th), `5L` (last Friday),
`1#2` (second Monday), `?` (any) and Jenkins' `H` (a value hashed from the schedule's name,
so every beat computes the same slot). Croniter's random `R` and year fields are refused.

Interval schedules are a fixed grid `anchor + k * interval` in real elapsed time.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.core.domain import LONGEST_SECONDS
from scheduler.core.exceptions import InvalidScheduleError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAY_MATCHES = ("any", "all")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MONTH_NAMES = tuple(calendar.month_name)
_SEARCH_MONTHS = 12 * 401
"""The Gregorian calendar repeats every 400 years, weekdays included: a match exists within
that many months or never."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 0, 7, _WEEKDAYS)


@dataclass(frozen=True)
class DaySpec:
    """Which days of a month fire: plain values plus the `L`/`W`/`#` forms."""

    dom: frozenset[int]
    dom_last: bool
    dom_last_weekday: bool
    dom_nearest_weekday: frozenset[int]
    dom_to_last: frozenset[tuple[int, int]]
    """`29-L`, `1-L/8`: (first day, step) up to the month's last day."""
    dom_star: bool
    dow: frozenset[int]
    dow_last: frozenset[int]
    dow_nth: frozenset[tuple[int, int]]
    dow_star: bool
    match_all: bool

    @property
    def dom_plain(self) -> bool:
        return not (
            self.dom_last or self.dom_last_weekday or self.dom_nearest_weekday or self.dom_to_last
        )


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the sets each field allows and what the DST rules need."""

    expr: str
    has_seconds: bool
    wildcard: bool
    """True when the minute or hour field holds a `*`: see the module's DST rules."""
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    days: DaySpec
    day_match: str = "any"
    name: str | None = None
    """The schedule name `H` was hashed from (None when the expression has no `H`)."""

    @property
    def hour_repeats(self) -> bool:
        """Kept for callers of the older name: a wildcard job fires in both fall-back passes."""
        return self.wildcard


def _hash(name: str, field: str, size: int) -> int:
    """A value in [0, size) from the schedule name: stable across processes and beats."""
    digest = hashlib.blake2b(f"{name}\x00{field}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % size


def _number(text: str, spec: _Field, expr: str) -> int:
    low = text.lower()
    if spec.names and low in spec.names:
        return spec.names[low]
    if not text.isdigit():
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: {text!r} is not a valid {spec.name} value"
        )
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: {spec.name} {value} is out of range {spec.low}-{spec.high}"
        )
    return value


def _step(text: str, expr: str, spec: _Field) -> int:
    if not text.isdigit() or int(text) == 0:
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: step /{text} in the {spec.name} field must be 1 or more"
        )
    return int(text)


_H_RANGE = re.compile(r"H(?:\((\w+)-(\w+)\))?(?:/(\w+))?", re.IGNORECASE)


def _item(item: str, spec: _Field, expr: str, name: str | None) -> set[int]:
    """The values of one comma-separated item of a plain field."""
    if not item:
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: empty item in the {spec.name} field"
        )
    if item.upper() == "R" or item.upper().startswith("R"):
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: R (random) is not supported, each beat would pick its own value; "
            "use H for a value fixed by the schedule name"
        )
    high = 28 if spec is _DOM else 6 if spec is _DOW else spec.high
    if item[0] in "Hh":
        hashed = _H_RANGE.fullmatch(item)
        if not hashed:
            raise InvalidScheduleError(
                f"invalid cron expression {expr!r}: {item!r} is not a valid H form (H, H/n, H(a-b), H(a-b)/n)"
            )
        if name is None:
            raise InvalidScheduleError(
                f"invalid cron expression {expr!r}: H picks a value from the schedule name; give the name (--name)"
            )
        lo = _number(hashed.group(1), spec, expr) if hashed.group(1) else spec.low
        hi = _number(hashed.group(2), spec, expr) if hashed.group(2) else high
        if lo > hi:
            raise InvalidScheduleError(
                f"invalid cron expression {expr!r}: reversed range H({lo}-{hi}) in the {spec.name} field"
            )
        if hashed.group(3):
            step = _step(hashed.group(3), expr, spec)
            start = lo + _hash(name, spec.name, min(step, hi - lo + 1))
            return set(range(start, hi + 1, step))
        return {lo + _hash(name, spec.name, hi - lo + 1)}
    base, _, step_text = item.partition("/")
    step = _step(step_text, expr, spec) if step_text or item.endswith("/") else 1
    if base in ("*", "?"):
        lo, hi = spec.low, spec.high if spec is not _DOW else 6
    elif "-" in base:
        first, _, last = base.partition("-")
        lo, hi = _number(first, spec, expr), _number(last, spec, expr)
        if spec is _DOW and lo == 7 and hi < 7:
            lo = 0  # 7-mon is Sunday to Monday
        if lo > hi and not (spec is _DOW and hi == 0 and lo > 0):
            raise InvalidScheduleError(
                f"invalid cron expression {expr!r}: reversed range {base} in the {spec.name} field; "
                f"write {last}-{first} or a list"
            )
        if spec is _DOW and hi == 0 and lo > 0:
            hi = 7
    else:
        lo = _number(base, spec, expr)
        hi = spec.high if step_text else lo
        if spec is _DOW and step_text:
            hi = 6
    values = set(range(lo, hi + 1, step))
    if spec is _DOW:
        values = {v % 7 for v in values}
    return values


def _plain(text: str, spec: _Field, expr: str, name: str | None) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if item == "?":
            raise InvalidScheduleError(
                f"invalid cron expression {expr!r}: ? is only allowed in the day fields"
            )
        values |= _item(item, spec, expr, name)
    return tuple(sorted(values))


_NTH = re.compile(r"(\w+)#(\d+)")
_LAST_DOW = re.compile(r"(\w+)L", re.IGNORECASE)
_LAST_DOW_PREFIX = re.compile(r"L(\w+)", re.IGNORECASE)
_TO_LAST = re.compile(r"(\d+)-L(?:/(\d+))?", re.IGNORECASE)
_NEAREST = re.compile(r"(\d+)W", re.IGNORECASE)


def _days(dom_text: str, dow_text: str, expr: str, name: str | None, match_all: bool) -> DaySpec:
    dom: set[int] = set()
    last = last_weekday = False
    nearest: set[int] = set()
    to_last: set[tuple[int, int]] = set()
    for item in dom_text.split(","):
        upper = item.upper()
        if upper == "L":
            last = True
        elif upper == "LW":
            last_weekday = True
        elif _NEAREST.fullmatch(item):
            nearest.add(_number(item[:-1], _DOM, expr))
        elif (m := _TO_LAST.fullmatch(item)) is not None:
            to_last.add(
                (
                    _number(m.group(1), _DOM, expr),
                    _step(m.group(2), expr, _DOM) if m.group(2) else 1,
                )
            )
        else:
            dom |= _item(item, _DOM, expr, name)
    dow: set[int] = set()
    dow_last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in dow_text.split(","):
        if (m := _NTH.fullmatch(item)) is not None:
            count = int(m.group(2))
            if not 1 <= count <= 5:
                raise InvalidScheduleError(
                    f"invalid cron expression {expr!r}: {item!r}: the n in d#n is 1 to 5 (there are at most five)"
                )
            nth.add((_number(m.group(1), _DOW, expr) % 7, count))
        elif item.upper() == "L":
            raise InvalidScheduleError(
                f"invalid cron expression {expr!r}: L alone in the day-of-week field is ambiguous; "
                "write 5L for the last Friday or L in the day-of-month field for the last day"
            )
        elif (m := _LAST_DOW.fullmatch(item) or _LAST_DOW_PREFIX.fullmatch(item)) is not None:
            dow_last.add(_number(m.group(1), _DOW, expr) % 7)
        else:
            dow |= _item(item, _DOW, expr, name)
    return DaySpec(
        dom=frozenset(dom),
        dom_last=last,
        dom_last_weekday=last_weekday,
        dom_nearest_weekday=frozenset(nearest),
        dom_to_last=frozenset(to_last),
        dom_star=dom_text.startswith(("*", "?")),
        dow=frozenset(dow),
        dow_last=frozenset(dow_last),
        dow_nth=frozenset(nth),
        dow_star=dow_text.startswith(("*", "?")),
        match_all=match_all,
    )


def parse_cron(expr: str, name: str | None = None, day_match: str = "any") -> CronSpec:
    """Parse and validate `expr`; raises InvalidScheduleError with a one-line reason.

    `name` is the schedule name `H` is hashed from; `day_match` is `any` (POSIX: day of
    month OR day of week when both are restricted) or `all` (both, as Celery's crontab).
    Cached; the name is part of the key only when the expression can hold an `H`, so many
    schedules sharing one expression share one parse."""
    return _parse_cron(expr, name if "h" in expr.lower() else None, day_match)


@lru_cache(maxsize=8192)
def _parse_cron(expr: str, name: str | None, day_match: str) -> CronSpec:
    if day_match not in DAY_MATCHES:
        raise InvalidScheduleError(f"day_match {day_match!r}: use any or all")
    text = " ".join(expr.split())
    if not text:
        raise InvalidScheduleError("empty cron expression")
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise InvalidScheduleError(
            f"unknown cron alias {expr!r}: use @hourly, @daily, @weekly, @monthly or @yearly"
        )
    fields = text.split(" ")
    if len(fields) == 7 or (len(fields) == 6 and re.fullmatch(r"\d{4}(-\d{4})?", fields[5])):
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: year fields are not supported; use 5 fields "
            "(minute hour day month weekday) or 6 (second first)"
        )
    if len(fields) not in (5, 6):
        raise InvalidScheduleError(
            f"cron expression {expr!r} has {len(fields)} fields: use 5 "
            "(minute hour day month weekday) or 6 (second first)"
        )
    has_seconds = len(fields) == 6
    second_text = fields[0] if has_seconds else "0"
    minute_text, hour_text, dom_text, month_text, dow_text = fields[-5:]
    uses_h = bool(re.search(r"(^|[ ,])H", text, re.IGNORECASE))
    spec = CronSpec(
        expr=text,
        has_seconds=has_seconds,
        wildcard="*" in minute_text or "*" in hour_text,
        seconds=_plain(second_text, _SECOND, expr, name),
        minutes=_plain(minute_text, _MINUTE, expr, name),
        hours=_plain(hour_text, _HOUR, expr, name),
        months=_plain(month_text, _MONTH, expr, name),
        days=_days(dom_text, dow_text, expr, name, day_match == "all"),
        day_match=day_match,
        name=name if uses_h else None,
    )
    if _next_wall(spec, datetime(2000, 1, 1)) is None:
        raise InvalidScheduleError(
            f"invalid cron expression {expr!r}: never fires: {_never_reason(spec)}"
        )
    return spec


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _never_reason(spec: CronSpec) -> str:
    days = spec.days
    if days.dom and days.dom_plain and (days.match_all or days.dow_star or days.dom_star):
        longest = {m: calendar.monthrange(2000, m)[1] for m in spec.months}
        if all(min(days.dom) > n for n in longest.values()):
            day = _ordinal(min(days.dom))
            if len(longest) == 1:
                return f"{_MONTH_NAMES[spec.months[0]]} has no {day}"
            names = ", ".join(_MONTH_NAMES[m] for m in spec.months)
            return f"none of {names} has a {day}"
    return "no date matches its day-of-month, month and day-of-week fields together"


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


def _next_wall(spec: CronSpec, after: datetime) -> datetime | None:
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
        wall = _next_wall(spec, wall)
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
    """Validate the kind fields of a schedule; exactly one of cron / interval / run_at."""
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
