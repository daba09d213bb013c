"""Human-readable text for schedules, and notes on the DST transitions that move their slots.

Cron text comes from `cron-descriptor` on the expression as this project reads it (`H`
resolved for the schedule's name, one-element ranges collapsed); intervals and one-offs are
put in our own words. Pure: `now` is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options

from scheduler.core.cron import CronSpec, next_wall, parse_cron, validate_timezone
from scheduler.core.definitions import ScheduleDefinition

_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_NOTES_SHOWN = 6


@dataclass(frozen=True)
class Description:
    """What a schedule does, in words, and where DST moves or repeats its slots."""

    text: str
    dst_notes: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return "; ".join((self.text, *self.dst_notes))


def _join(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def _weekday(text: str) -> int:
    return _WEEKDAYS[text.lower()] if text.lower() in _WEEKDAYS else int(text) % 7


def _describable(spec: CronSpec) -> tuple[str, str | None]:
    """The expression cron-descriptor gets, and our own words for a weekday list it misreads."""
    fields = spec.expr.split(" ")
    offset = 1 if spec.has_seconds else 0
    if spec.name is not None:
        resolved = [spec.seconds, spec.minutes, spec.hours] if spec.has_seconds else []
        resolved += [spec.minutes, spec.hours]
        values = resolved[-2:] if not spec.has_seconds else resolved[:3]
        for i, text in enumerate(fields[: 2 + offset]):
            if "H" in text.upper():
                fields[i] = _join(values[i])
        if "H" in fields[3 + offset].upper():
            fields[3 + offset] = _join(spec.months)
        if "H" in fields[2 + offset].upper():
            fields[2 + offset] = _join(tuple(sorted(spec.days.dom)))
        if "H" in fields[4 + offset].upper():
            fields[4 + offset] = _join(tuple(sorted(spec.days.dow)))
    dow = fields[4 + offset]
    items = [re.sub(r"^(\w+)-\1$", r"\1", item) for item in dow.split(",")]
    fields[4 + offset] = ",".join(items)
    own = None
    if len(items) > 1 and any("#" in item for item in items):
        words = []
        for item in items:
            if "#" in item:
                day, _, n = item.partition("#")
                words.append(f"the {_ORDINALS[int(n)]} {_DAY_NAMES[_weekday(day)]} of the month")
            elif item.isdigit() or item.lower() in _WEEKDAYS:
                words.append(f"every {_DAY_NAMES[_weekday(item)]}")
            else:
                words.append(f"days of week {item}")
        own = "on " + " and ".join(words)
        fields[4 + offset] = "*"
    return " ".join(fields), own


def describe_cron(spec: CronSpec) -> str:
    expr, own = _describable(spec)
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        text = str(ExpressionDescriptor(expr, options).get_description())
    except Exception:  # the describer refuses forms we accept: say the expression itself
        text = f"cron {spec.expr}"
    if own:
        text = f"{text}, {own}"
    days = spec.days
    if not (days.dom_star or days.dow_star):
        text += (
            " (both the day of month and the day of week must match)"
            if days.match_all
            else " (either the day of month or the day of week)"
        )
    return text


def describe_interval(seconds: Decimal) -> str:
    total = Decimal(seconds)
    if total < 1:
        return f"every {(total * 1000).normalize():f} milliseconds"
    parts = []
    rest = total
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = int(rest // size)
        if count:
            parts.append(f"{count} {unit}{'s' if count > 1 else ''}")
            rest -= count * size
    if rest:
        value = f"{rest.normalize():f}"
        parts.append(f"{value} second{'' if value == '1' else 's'}")
    if parts == ["1 day"] or parts == ["1 hour"] or parts == ["1 minute"]:
        return f"every {parts[0][2:]}"
    return "every " + " ".join(parts)


def describe_once(run_at: datetime, tz: str) -> str:
    local = run_at.astimezone(validate_timezone(tz))
    return f"once, at {local:%Y-%m-%d %H:%M:%S} {tz} ({local:%z})"


def _transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in [start, end) where the zone's offset changes (to the second)."""
    found = []
    step = timedelta(hours=6)
    t = start
    offset = t.astimezone(tz).utcoffset()
    while t < end:
        nxt = t + step
        nxt_offset = nxt.astimezone(tz).utcoffset()
        if nxt_offset != offset:
            low, high = t, nxt
            while high - low > timedelta(seconds=1):
                mid = (low + (high - low) / 2).replace(microsecond=0)
                if mid <= low:
                    mid = low + timedelta(seconds=1)
                if mid.astimezone(tz).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append(high)
        t, offset = nxt, nxt_offset
    return found


def _walls_between(spec: CronSpec, low: datetime, high: datetime) -> list[datetime]:
    walls: list[datetime] = []
    wall = next_wall(spec, low - timedelta(microseconds=1))
    while wall is not None and wall < high:
        walls.append(wall)
        wall = next_wall(spec, wall)
    return walls


def _times(walls: list[datetime], fmt: str) -> str:
    shown = ", ".join(w.strftime(fmt) for w in walls[:_NOTES_SHOWN])
    more = len(walls) - _NOTES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def dst_notes(spec: CronSpec, tz_name: str, now: datetime, days: int = 366) -> tuple[str, ...]:
    """One note per DST transition of the coming `days` that skips or repeats a slot."""
    tz = validate_timezone(tz_name)
    fmt = "%H:%M:%S" if spec.has_seconds else "%H:%M"
    notes = []
    for instant in _transitions(
        tz, now.astimezone(UTC), now.astimezone(UTC) + timedelta(days=days)
    ):
        before = (instant - timedelta(seconds=1)).astimezone(tz)
        after = instant.astimezone(tz)
        before_offset, after_offset = before.utcoffset(), after.utcoffset()
        assert before_offset is not None
        assert after_offset is not None
        shift = after_offset - before_offset
        wall_at = (instant + before_offset).replace(tzinfo=None)
        day = f"{after:%Y-%m-%d}"
        if shift > timedelta(0):
            walls = _walls_between(spec, wall_at, wall_at + shift)
            if not walls:
                continue
            missing = _times(walls, fmt)
            verb = "does" if len(walls) == 1 else "do"
            if spec.wildcard:
                notes.append(f"{day}: {missing} {verb} not exist; skipped")
            else:
                notes.append(f"{day}: {missing} {verb} not exist; fires at {after:{fmt}}")
        elif shift < timedelta(0):
            walls = _walls_between(spec, wall_at + shift, wall_at)
            if not walls:
                continue
            repeated = _times(walls, fmt)
            verb = "occurs" if len(walls) == 1 else "occur"
            if spec.wildcard:
                notes.append(f"{day}: {repeated} {verb} twice; fires in both passes")
            else:
                first = f"{before:%z}"
                notes.append(f"{day}: {repeated} {verb} twice; fires once (the first, {first})")
    return tuple(notes)


def describe(
    *,
    cron: str | None = None,
    interval_seconds: Decimal | float | int | None = None,
    run_at: datetime | None = None,
    timezone: str = "UTC",
    name: str | None = None,
    day_match: str = "any",
    now: datetime | None = None,
) -> Description:
    """Text for one schedule's timing, with DST notes for the year after `now`."""
    now = now or datetime.now(UTC)
    if cron is not None:
        spec = parse_cron(cron, name, day_match)
        return Description(describe_cron(spec), dst_notes(spec, timezone, now))
    if interval_seconds is not None:
        return Description(describe_interval(Decimal(str(interval_seconds))))
    if run_at is not None:
        return Description(describe_once(run_at, timezone))
    return Description("no timing")


def describe_definition(definition: ScheduleDefinition, now: datetime | None = None) -> Description:
    return describe(
        cron=definition.cron,
        interval_seconds=definition.interval_seconds,
        run_at=definition.run_at,
        timezone=definition.timezone,
        name=definition.name,
        day_match=definition.day_match,
        now=now,
    )


def relative(when: datetime | None, now: datetime | None = None) -> str:
    """`when` from `now` in the coarsest whole unit: `in 2h`, `5m ago`, `-` for None."""
    if when is None:
        return "-"
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    future = seconds >= 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"
