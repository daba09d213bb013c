"""`scheduler schedules list` and `show`: schedules with their meaning in words, DST
notes, next fire times and last runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table

from scheduler import api
from scheduler.cli.common import fail, json_option, print_json
from scheduler.cli.format import (
    console,
    data,
    describe_when,
    local_time,
    relative,
    status_text,
)
from scheduler.core.bounds import plain
from scheduler.core.cron import next_fire_times
from scheduler.core.cron_describe import Description, describe_definition
from scheduler.core.definitions import ScheduleDefinition, from_row, to_mapping
from scheduler.core.exceptions import ScheduleNotFound, SchedulerError


def load_schedule(name: str) -> dict[str, Any]:
    """Schedule `name` with its run state, or stop with the one-line error."""
    try:
        return api.get_schedule(name)
    except ScheduleNotFound as exc:
        fail(str(exc))


@click.command("list")
@json_option
def list_(as_json: bool) -> None:
    """All schedules: when they run and what that means in words, next run (local and
    relative), last status, last error."""
    rows = api.list_schedules()
    if as_json:
        print_json([listing(r) for r in rows])
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "TASK", "WHEN", "MEANING", "TZ", "ENABLED", "NEXT RUN", "LAST", "ERROR"):
        table.add_column(column, overflow="fold")
    for r in rows:
        definition = from_row(r)
        nxt = r["next_run_at"]
        table.add_row(
            data(r["name"]),
            data(r["task"]),
            data(describe_when(definition)),
            data(_summary(definition).text),
            data(r["timezone"]),
            _enabled_text(r),
            f"{local_time(nxt, r['timezone'])} ({relative(nxt)})" if nxt else "-",
            status_text(r["last_status"]),
            data((r["last_error"] or "")[:60]),
        )
    console().print(table)


def _enabled_text(row: dict[str, Any]) -> str:
    if row["enabled"]:
        return "yes"
    if row.get("paused_reason"):
        return f"paused: {data(row['paused_reason'][:40])}"
    return "no"


def listing(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **to_mapping(from_row(row)),
        "enabled": row["enabled"],
        "paused_reason": row.get("paused_reason"),
        "paused_by": row.get("paused_by"),
        "paused_at": row.get("paused_at"),
        "upcoming_runs": row.get("upcoming_runs", 0),
        "next_run_at": row["next_run_at"],
        "last_run_at": row["last_run_at"],
        "total_run_count": row["total_run_count"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        **_described(from_row(row)),
    }


def _summary(definition: ScheduleDefinition) -> Description:
    try:
        return describe_definition(definition)
    except SchedulerError as exc:  # a raw row the beat flags: say why instead of what
        return Description(f"cannot be described: {exc}")


def _described(definition: ScheduleDefinition) -> dict[str, Any]:
    summary = _summary(definition)
    return {
        "day_match": definition.day_match,
        "summary": summary.text,
        "dst_notes": list(summary.dst_notes),
    }


@click.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Definition, its meaning in words with DST notes, next 5 fire times and last 10 runs
    of schedule NAME."""
    row = load_schedule(name)
    definition = from_row(row)
    upcoming = _upcoming(row, definition, 5)
    runs = api.history(schedule=name, limit=10)
    if as_json:
        print_json({**listing(row), "upcoming": upcoming, "runs": runs})
        return
    out = console()
    out.print(
        f"[bold]{data(name)}[/bold]  {data(describe_when(definition))}  task {data(definition.task)}"
    )
    summary = _summary(definition)
    out.print(f"  means: {summary.text}", markup=False)
    if definition.cron and definition.day_match == "any":
        out.print("  day_match: any")
    for note in summary.dst_notes:
        out.print(f"  DST {note}", markup=False)
    for key, value in to_mapping(definition).items():
        if key not in ("name",):
            out.print(f"  {key}: {data(value)}")
    out.print(f"  enabled: {row['enabled']}  runs so far: {row['total_run_count']}")
    if row.get("paused_reason"):
        out.print(
            f"  paused by {row['paused_by'] or '-'} at {local_time(row['paused_at'])}: "
            f"{plain(row['paused_reason'])}",
            markup=False,
        )
    if row.get("upcoming_runs"):
        out.print(f"  upcoming runs (pending or queued): {row['upcoming_runs']}")
    if row["last_error"]:
        out.print(f"  [red]last_error: {data(row['last_error'])}[/red]")
    out.print("[bold]next fire times[/bold]")
    for when in upcoming:
        out.print(f"  {local_time(when, definition.timezone)}  ({relative(when)})")
    out.print("[bold]last runs[/bold]")
    for run in runs:
        out.print(
            f"  {local_time(run['created_at'], definition.timezone)}  {status_text(run['status'])}"
            f"  {run['duration_ms'] if run['duration_ms'] is not None else '-'} ms  {run['id']}"
        )


def _upcoming(row: dict[str, Any], definition: ScheduleDefinition, count: int) -> list[datetime]:
    if not row["enabled"]:
        return []
    now = datetime.now(UTC)
    if definition.cron:
        start = max(now, definition.start_at) if definition.start_at else now
        times = next_fire_times(
            definition.cron,
            definition.timezone,
            start,
            count,
            name=definition.name,
            day_match=definition.day_match,
        )
    elif definition.interval_seconds:
        first = row["next_run_at"] or definition.start_at or now
        step = timedelta(seconds=float(definition.interval_seconds))
        times = [first + i * step for i in range(count)]
    else:
        times = [definition.run_at] if definition.run_at and definition.run_at > now else []
    if definition.end_at:
        times = [t for t in times if t <= definition.end_at]
    return times
