"""`scheduler next`, `scheduler tasks`, `scheduler reap`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from scheduler import api
from scheduler.cli.common import json_option, print_json
from scheduler.cli.format import console, data
from scheduler.core.cron import DAY_MATCHES, next_fire_times, validate_timezone
from scheduler.core.cron_describe import describe
from scheduler.core.definitions import parse_instant


@click.command("next")
@click.option("--cron", "expr", required=True, help='Cron expression, e.g. "30 1 * * *".')
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--after", help="Start after this ISO time (default: now).")
@click.option("--count", "-n", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--name", help="Schedule name that H values are hashed from.")
@click.option(
    "--day-match",
    type=click.Choice(DAY_MATCHES),
    default="any",
    show_default=True,
    help="any: day of month OR day of week (POSIX); all: both (Celery's crontab).",
)
@json_option
def next_(
    expr: str,
    tz: str,
    after: str | None,
    count: int,
    name: str | None,
    day_match: str,
    as_json: bool,
) -> None:
    """Print what a cron expression means and its next fire times, in UTC and local time
    (DST rules applied), with a note for each DST change of the coming year that skips or
    repeats one of its slots.

    \b
    scheduler next --cron "30 1 * * *" --tz America/New_York --after 2026-10-31 --count 3
    scheduler next --cron "H 3 * * *" --name nightly-backup
    scheduler next --cron "0 0 1-7 * mon" --day-match all
    """
    zone = validate_timezone(tz)
    start = parse_instant(after, tz) if after else datetime.now(UTC)
    times = next_fire_times(expr, tz, start, count, name=name, day_match=day_match)
    items = [{"utc": t.isoformat(), "local": t.astimezone(zone).isoformat()} for t in times]
    if as_json:
        print_json(items)
        return
    described = describe(cron=expr, timezone=tz, name=name, day_match=day_match, now=start)
    click.echo(described.text)
    for note in described.dst_notes:
        click.echo(f"  DST {note}")
    for item in items:
        click.echo(f"{item['utc']}    {item['local']}")


TASK_OPTIONS = ("queue", "rate_limit", "max_retries", "default_retry_delay", "soft_time_limit",
                "time_limit", "acks_late", "reject_on_worker_lost", "ignore_result")  # fmt: skip


@click.command("tasks")
@json_option
def tasks(as_json: bool) -> None:
    """Registered tasks (the names a schedule may use) with their options."""
    from config.celery import app
    from scheduler.worker.tracked import TrackedTask

    app.loader.import_default_modules()
    rows: list[dict[str, Any]] = []
    for name in sorted(app.tasks):
        if name.startswith("celery."):
            continue
        task = app.tasks[name]
        row = {"name": name, "tracked": isinstance(task, TrackedTask)}
        row.update({option: getattr(task, option, None) for option in TASK_OPTIONS})
        rows.append(row)
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "TRACKED", "QUEUE", "MAX RETRIES", "SOFT/HARD LIMIT", "ACKS LATE"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            data(r["name"]),
            "yes" if r["tracked"] else "no",
            data(r["queue"] or "default"),
            str(r["max_retries"]),
            f"{r['soft_time_limit'] or '-'}/{r['time_limit'] or '-'}",
            "yes" if r["acks_late"] else "no",
        )
    console().print(table)


@click.command("reap")
@json_option
def reap(as_json: bool) -> None:
    """Mark `lost` the runs whose worker died or that outlived their hard time limit.

    The beat does this every 30 s; this command does it once, now. Workers on other hosts
    are asked (Celery's `inspect stats`, twice, a second apart) which processes they run.
    """
    lost = api.reap_lost()
    if as_json:
        print_json({"lost": lost})
    else:
        click.echo(f"marked {lost} runs lost")
