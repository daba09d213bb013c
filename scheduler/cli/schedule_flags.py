"""The definition flags of `scheduler schedules add` and `update`, and how they change a
definition."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from scheduler.cli.common import Decorator, stacked
from scheduler.core.cron import DAY_MATCHES, validate_timezone
from scheduler.core.definitions import (
    ScheduleDefinition,
    parse_duration,
    parse_instant,
    parse_json,
)


def definition_options(for_update: bool) -> Decorator:
    """The flags shared by `add` and `update`."""
    options = [
        click.option("--task", "-t", help="Registered task name (see `scheduler tasks`)."),
        click.option("--cron", help='Cron expression, e.g. "*/5 * * * *" or @daily.'),
        click.option("--every", help="Interval: 30s, 5m, 1h, 1h30m, 2d."),
        click.option("--at", "at", help="One-off run time, ISO 8601."),
        click.option("--tz", help="IANA time zone for cron and naive times (default UTC)."),
        click.option("--args", "args_json", help="Positional arguments as a JSON array."),
        click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object."),
        click.option("--queue", help="Queue to publish to."),
        click.option(
            "--misfire", type=click.Choice(["run_once", "skip", "run_all"]), help="Misfire policy."
        ),
        click.option("--grace", type=int, help="Misfire grace in seconds (default 60)."),
        click.option(
            "--overlap", type=click.Choice(["allow", "skip", "buffer_one"]), help="Overlap policy."
        ),
        click.option("--jitter", type=int, help="Delay each run by up to this many seconds."),
        click.option("--start", help="Do not run before this time (ISO 8601)."),
        click.option("--end", help="Do not run after this time (ISO 8601)."),
        click.option("--max-runs", type=int, help="Disable after this many runs."),
        click.option("--description", help="Free text."),
        click.option(
            "--day-match",
            type=click.Choice(DAY_MATCHES),
            help="Cron days: any = day of month OR day of week (POSIX, default); "
            "all = both (Celery's crontab).",
        ),
        click.option(
            "--pause-after-failures",
            type=click.IntRange(0),
            help="Pause after this many consecutive failures (failed, timeout, lost); 0: never.",
        ),
    ]
    if not for_update:
        options.append(click.option("--disabled", is_flag=True, help="Create it disabled."))
    return stacked(options)


def apply_flags(base: ScheduleDefinition, flags: dict[str, Any]) -> ScheduleDefinition:
    """`base` changed by the flags that were given."""
    changes: dict[str, Any] = {}
    tz = flags.get("tz") or base.timezone
    kinds = [k for k in ("cron", "every", "at") if flags.get(k)]
    if len(kinds) > 1:
        raise click.UsageError("give only one of --cron, --every, --at")
    if kinds:
        changes.update(cron=None, interval_seconds=None, run_at=None)
        if flags.get("cron"):
            changes["cron"] = flags["cron"]
        elif flags.get("every"):
            changes["interval_seconds"] = parse_duration(flags["every"])
        else:
            changes["run_at"] = parse_instant(flags["at"], tz)
    if flags.get("tz") is not None:
        validate_timezone(flags["tz"])
        changes["timezone"] = flags["tz"]
    if flags.get("task"):
        changes["task"] = flags["task"]
    if flags.get("args_json") is not None:
        changes["args"] = parse_json(flags["args_json"], "--args")
    if flags.get("kwargs_json") is not None:
        changes["kwargs"] = parse_json(flags["kwargs_json"], "--kwargs")
    if flags.get("queue"):
        changes["options"] = {**(base.options or {}), "queue": flags["queue"]}
    simple = {
        "misfire": "misfire_policy",
        "grace": "misfire_grace_seconds",
        "overlap": "overlap_policy",
        "jitter": "jitter_seconds",
        "max_runs": "max_runs",
        "description": "description",
        "day_match": "day_match",
    }
    for flag, field in simple.items():
        if flags.get(flag) is not None:
            changes[field] = flags[flag]
    if flags.get("pause_after_failures") is not None:
        changes["pause_after_failures"] = flags["pause_after_failures"] or None
    for flag, field in (("start", "start_at"), ("end", "end_at")):
        if flags.get(flag):
            changes[field] = parse_instant(flags[flag], tz)
    if flags.get("disabled"):
        changes["enabled"] = False
    return dataclasses.replace(base, **changes)
