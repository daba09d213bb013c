"""How times, statuses and schedules read in the terminal."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from scheduler.core.bounds import plain
from scheduler.core.cron import validate_timezone
from scheduler.core.cron_describe import relative as relative
from scheduler.core.definitions import ScheduleDefinition

STATUS_STYLE = {
    "success": "green",
    "failed": "red",
    "timeout": "red",
    "lost": "red",
    "revoked": "yellow",
    "missed": "yellow",
    "skipped": "yellow",
    "running": "cyan",
    "retrying": "magenta",
    "queued": "blue",
    "pending": "blue",
}


def data(value: object) -> str:
    """Stored text for Rich output: markup escaped (a `[prod]` or `[/]` in a name prints as
    written) and ANSI escapes and control characters removed."""
    return escape(plain(value))


def status_text(code: str | None) -> str:
    if not code:
        return "-"
    style = STATUS_STYLE.get(code)
    return f"[{style}]{code}[/{style}]" if style else data(code)


def local_time(when: datetime | None, tz: str = "UTC") -> str:
    if when is None:
        return "-"
    try:
        zone = validate_timezone(tz)
    except Exception:
        zone = validate_timezone("UTC")
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def describe_when(definition: ScheduleDefinition) -> str:
    if definition.cron:
        return f"cron {definition.cron}"
    if definition.interval_seconds is not None:
        value = definition.interval_seconds
        seconds = int(value) if value == value.to_integral_value() else float(value)
        return f"every {seconds}s"
    if definition.run_at is not None:
        return f"once at {definition.run_at.astimezone(UTC).isoformat()}"
    return "-"


def console() -> Console:
    """Rich output at the terminal's width; into a pipe or file, lines are not folded at
    80 columns (a table row stays one line for grep and awk)."""
    return Console(width=None if sys.stdout.isatty() else 240)


def dashboard_url(host: str, port: int) -> str:
    """The address to open for a dashboard listening on `host`:`port` (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
