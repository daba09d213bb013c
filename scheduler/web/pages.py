"""How values read on the dashboard's pages: times, durations, schedules as text, the next
fire times with DST notes. Pure functions (time is a parameter)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.core.cron import next_fire_times, validate_timezone
from scheduler.core.cron_describe import relative as relative
from scheduler.core.exceptions import SchedulerError


def zone(tz: str | None) -> ZoneInfo:
    try:
        return validate_timezone(tz or "UTC")
    except SchedulerError:
        return ZoneInfo("UTC")


def local_time(when: datetime | None, tz: str | None = "UTC") -> str:
    if when is None:
        return "-"
    return when.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(ms: float | int | Decimal | None) -> str:
    if ms is None:
        return "-"
    value = float(ms)
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    return f"{value / 60_000:.1f} min"


def percent(part: int | None, whole: int | None) -> str:
    if not whole:
        return "-"
    return f"{100 * (part or 0) / whole:.1f}%"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def _seconds_text(value: Decimal) -> str:
    seconds = float(value)
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"every {n} {unit}{'s' if n != 1 else ''}"
    return f"every {seconds:g} seconds"


def describe(row: dict[str, Any]) -> str:
    """The schedule as text, with its time zone."""
    tz = row.get("timezone") or "UTC"
    if row.get("cron"):
        return f"cron {row['cron']} ({tz})"
    if row.get("interval_seconds") is not None:
        return _seconds_text(Decimal(row["interval_seconds"]))
    if row.get("run_at") is not None:
        return f"once at {local_time(row['run_at'], tz)}"
    return "-"


def upcoming(row: dict[str, Any], count: int, now: datetime) -> list[dict[str, Any]]:
    """The next `count` fire times of a schedule row, each with `utc`, `local` and a `note`
    where the UTC offset changes (a DST switch lies between it and the previous one)."""
    if not row.get("enabled"):
        return []
    tz = zone(row.get("timezone"))
    start = max(now, row["start_at"]) if row.get("start_at") else now
    times: list[datetime]
    try:
        if row.get("cron"):
            times = next_fire_times(row["cron"], row.get("timezone") or "UTC", start, count)
        elif row.get("interval_seconds") is not None:
            step = timedelta(seconds=float(row["interval_seconds"]))
            first = row.get("next_run_at") or row.get("start_at") or now
            if first < now:
                first += ((now - first) // step + 1) * step
            times = [first + i * step for i in range(count)]
        else:
            run_at = row.get("run_at")
            times = [run_at] if run_at is not None and run_at > now else []
    except (SchedulerError, OverflowError, ValueError):
        return []
    if row.get("end_at"):
        times = [t for t in times if t <= row["end_at"]]
    result = []
    previous = now.astimezone(tz).utcoffset()
    for when in times:
        offset = when.astimezone(tz).utcoffset()
        note = ""
        if offset != previous:
            note = f"UTC offset changes to {_offset(offset)} (daylight saving time)"
        previous = offset
        result.append({"utc": when, "local": local_time(when, str(tz)), "note": note})
    return result


def _offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
