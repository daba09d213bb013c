"""`scheduler schedules add|list|show|update|enable|disable|pause|resume|remove|trigger|backfill`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from scheduler import api
from scheduler.cli.common import fail, json_option, print_json, run_db
from scheduler.cli.format import (
    console,
    data,
    describe_when,
    local_time,
    relative,
    status_text,
)
from scheduler.core.bounds import plain
from scheduler.core.cron import DAY_MATCHES, next_fire_times, validate_timezone
from scheduler.core.cron_describe import Description, describe_definition
from scheduler.core.definitions import (
    ScheduleDefinition,
    from_row,
    parse_duration,
    parse_instant,
    parse_json,
    to_mapping,
)
from scheduler.core.exceptions import ScheduleNotFound, SchedulerError
from scheduler.store.schedules import ScheduleStore


def definition_options(for_update: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
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

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


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


def _load(name: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        from scheduler.runtime.db import get_runtime

        async with get_runtime().sessions() as session:
            rows = await ScheduleStore.list_schedules(session, names=[name])
        return rows[0] if rows else None

    found = run_db(find)
    if found is None:
        fail(str(ScheduleNotFound(name)))
    return found


@click.group()
def schedules() -> None:
    """Schedule definitions: add, list, show, update, enable, disable, pause, resume, remove,
    trigger, backfill.

    \b
    scheduler schedules add cleanup --task demo.noop --every 5m
    scheduler schedules add report --task demo.sleep --cron "30 1 * * *" --tz Europe/London \\
        --kwargs '{"seconds": 2}'
    scheduler schedules list --json
    """


@schedules.command("add")
@click.argument("name")
@definition_options(for_update=False)
@json_option
def add(name: str, as_json: bool, **flags: Any) -> None:
    """Create schedule NAME. Give one of --cron, --every or --at.

    \b
    Examples:
      scheduler schedules add ping --task demo.noop --every 30s
      scheduler schedules add nightly --task demo.noop --cron "0 3 * * *" --tz America/New_York
      scheduler schedules add once --task demo.noop --at 2026-12-24T18:00 --tz Europe/Paris
    """
    if not flags.get("task"):
        raise click.UsageError("--task is required")
    if not any(flags.get(k) for k in ("cron", "every", "at")):
        raise click.UsageError("give one of --cron, --every or --at")
    definition = apply_flags(ScheduleDefinition(name=name, task=flags["task"]), flags)
    if run_db(lambda: _exists(name)):
        fail(f"a schedule named {name!r} exists: use `scheduler schedules update {name}`")
    api.upsert_schedule(definition)
    if as_json:
        print_json(to_mapping(definition))
    else:
        click.echo(f"created schedule {name} ({describe_when(definition)})")


async def _exists(name: str) -> bool:
    from scheduler.runtime.db import get_runtime

    async with get_runtime().sessions() as session:
        return await ScheduleStore.get_schedule_by_name(session, name) is not None


@schedules.command("update")
@click.argument("name")
@definition_options(for_update=True)
@json_option
def update(name: str, as_json: bool, **flags: Any) -> None:
    """Change the given fields of schedule NAME; others keep their values.

    \b
    Example:
      scheduler schedules update nightly --cron "0 4 * * *" --misfire skip
    """
    current = from_row(_load(name))
    changed = apply_flags(current, flags)
    outcome = api.upsert_schedule(changed)
    if as_json:
        print_json({"name": name, "outcome": outcome.value, "definition": to_mapping(changed)})
    else:
        click.echo(f"schedule {name}: {outcome.value}")


def _set_enabled(name: str, enabled: bool) -> None:
    current = from_row(_load(name))
    api.upsert_schedule(dataclasses.replace(current, enabled=enabled), check_task=enabled)
    click.echo(f"schedule {name} {'enabled' if enabled else 'disabled'}")


@schedules.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Enable schedule NAME: it runs from its next slot (no catch-up for the time it was off)."""
    _set_enabled(name, True)


@schedules.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Disable schedule NAME: no further runs until enabled."""
    _set_enabled(name, False)


@schedules.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def remove(name: str, yes: bool) -> None:
    """Delete schedule NAME. Its execution history stays (schedule_id set to NULL)."""
    _load(name)
    if not yes:
        click.confirm(f"delete schedule {name!r}?", abort=True)
    api.remove_schedule(name)
    click.echo(f"removed schedule {name}")


@schedules.command("trigger")
@click.argument("name")
@click.option("--force", is_flag=True, help="Run even if its overlap policy says no.")
@click.option("--args", "args_json", help="Positional arguments for this run (a JSON array).")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments for this run (a JSON object).")
@json_option
def trigger(
    name: str, force: bool, args_json: str | None, kwargs_json: str | None, as_json: bool
) -> None:
    """Run schedule NAME now (trigger `manual`; not counted as a slot).

    --args / --kwargs replace the schedule's own for this one run; the run records what it
    was sent.

    \b
      scheduler schedules trigger report --kwargs '{"day": "2026-11-30"}'
    """
    args = None if args_json is None else parse_json(args_json, "--args")
    kwargs = None if kwargs_json is None else parse_json(kwargs_json, "--kwargs")
    result = api.trigger(name, force=force, args=args, kwargs=kwargs)
    if as_json:
        print_json(
            {
                "execution_id": result.execution_id,
                "status": result.status.value,
                "reason": result.reason,
            }
        )
        return
    if result.reason:
        click.echo(f"{result.status.value}: {result.reason} (execution {result.execution_id})")
    else:
        click.echo(f"{result.status.value}: execution {result.execution_id}")


@schedules.command("pause")
@click.argument("name")
@click.option("--reason", "-r", required=True, help="Why (shown by list and show).")
@json_option
def pause(name: str, reason: str, as_json: bool) -> None:
    """Pause schedule NAME: disable it, noting why, who (your OS user) and when.

    Runs already on the broker still run; runs written ahead are withdrawn. `resume` (or
    `enable`) starts it again from its next slot.

    \b
      scheduler schedules pause nightly --reason "warehouse migration until Friday"
    """
    row = api.pause_schedule(name, reason, actor=os_user())
    if as_json:
        print_json(_listing(row))
    else:
        click.echo(f"schedule {name} paused by {row['paused_by']}: {row['paused_reason']}")


@schedules.command("resume")
@click.argument("name")
@json_option
def resume(name: str, as_json: bool) -> None:
    """Resume schedule NAME: enable it from its next slot (no catch-up for the paused time)."""
    row = api.resume_schedule(name, actor=os_user())
    if as_json:
        print_json(_listing(row))
    else:
        click.echo(f"schedule {name} resumed")


def os_user() -> str:
    """Who runs this command, as the operating system knows them."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@schedules.command("backfill")
@click.argument("name")
@click.option("--from", "start", required=True, help="First slot time (ISO 8601), included.")
@click.option("--to", "end", required=True, help="Last slot time (ISO 8601), included.")
@click.option("--force", is_flag=True, help="Ignore the overlap policy.")
@click.option("--dry-run", is_flag=True, help="Report the slots, write nothing.")
@json_option
def backfill(name: str, start: str, end: str, force: bool, dry_run: bool, as_json: bool) -> None:
    """Run schedule NAME once for each of its slots from --from to --to (trigger `backfill`).

    Each slot runs once: slots that already have a run (from the beat or an earlier
    backfill) are reported and left alone, so running it twice creates nothing new. Slots
    after now are left to the beat. At most SCHEDULER_BACKFILL_MAX slots (default 1000).
    Unless --force, the overlap policy applies (`skip`: one run, `buffer_one`: one plus one
    waiting; the other slots are reported as skipped and can be backfilled later). Times
    without an offset are read in the schedule's time zone.

    \b
      scheduler schedules backfill nightly --from 2026-11-01 --to 2026-11-30T23:59 --dry-run
    """
    tz = _load(name)["timezone"]
    start_at, end_at = parse_instant(start, tz), parse_instant(end, tz)
    with Progress(console=Console(stderr=True), disable=as_json, transient=True) as bar:
        task = bar.add_task("publishing", total=None, visible=False)

        def advance(done: int, total: int) -> None:
            if total >= PROGRESS_FROM:
                bar.update(task, completed=done, total=total, visible=True)

        report = api.backfill(
            name, start_at, end_at, force=force, dry_run=dry_run, progress=advance
        )
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    verb = "would create" if dry_run else "created"
    click.echo(
        f"schedule {name}: {verb} {len(report.created)} runs, {len(report.existing)} slots "
        f"already ran, {len(report.skipped)} skipped by the overlap policy"
    )
    for label, slots in (("already ran", report.existing), ("skipped", report.skipped)):
        for slot in slots:
            click.echo(f"  {label}: {local_time(slot, tz)}")


PROGRESS_FROM = 100
"""A backfill shows a progress bar (on stderr) from this many runs."""


@schedules.command("list")
@json_option
def list_(as_json: bool) -> None:
    """All schedules: when they run and what that means in words, next run (local and
    relative), last status, last error."""
    rows = api.list_schedules()
    if as_json:
        print_json([_listing(r) for r in rows])
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


def _listing(row: dict[str, Any]) -> dict[str, Any]:
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


@schedules.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Definition, its meaning in words with DST notes, next 5 fire times and last 10 runs
    of schedule NAME."""
    row = _load(name)
    definition = from_row(row)
    upcoming = _upcoming(row, definition, 5)
    runs = api.history(schedule=name, limit=10)
    if as_json:
        print_json({**_listing(row), "upcoming": upcoming, "runs": runs})
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
        from datetime import timedelta

        first = row["next_run_at"] or definition.start_at or now
        step = timedelta(seconds=float(definition.interval_seconds))
        times = [first + i * step for i in range(count)]
    else:
        times = [definition.run_at] if definition.run_at and definition.run_at > now else []
    if definition.end_at:
        times = [t for t in times if t <= definition.end_at]
    return times
