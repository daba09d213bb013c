"""The cron field parser: an expression's text to the sets of values each field allows.

Day of month and day of week combine as in Vixie cron when `day_match` is `any` (the
default): when both fields are restricted (neither starts with `*` or is `?`), a day
matching either fires; otherwise both must match. `day_match="all"` always requires both,
as Celery's crontab does.

Beyond POSIX fields: six fields mean seconds first (`*/10 * * * * *`), as in Quartz; `L`
(last day), `LW` (last weekday), `15W` (weekday nearest the 15th), `5L` (last Friday),
`1#2` (second Monday), `?` (any) and Jenkins' `H` (a value hashed from the schedule's name,
so every beat computes the same slot). Croniter's random `R` and year fields are refused.
Pure: no I/O.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from dataclasses import dataclass

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


def parse_fields(expr: str, name: str | None, day_match: str) -> CronSpec:
    """The fields of `expr` read by the rules above; InvalidScheduleError with a one-line
    reason. Whether the result ever fires is for `scheduler.core.cron` to tell."""
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
    return CronSpec(
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


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def never_reason(spec: CronSpec) -> str:
    """Why `spec` never fires, in words (for a spec `scheduler.core.cron` found never fires)."""
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
