"""`scheduler schedules add|list|show|update|enable|disable|pause|resume|remove|trigger|backfill`."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from scheduler import api
from scheduler.cli.common import fail, json_option, print_json
from scheduler.cli.format import describe_when, local_time
from scheduler.cli.schedule_flags import apply_flags, definition_options
from scheduler.cli.schedules_view import list_, listing, load_schedule, show
from scheduler.core.definitions import (
    ScheduleDefinition,
    from_row,
    parse_instant,
    parse_json,
    to_mapping,
)


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


schedules.add_command(list_)
schedules.add_command(show)


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
    if api.schedule_exists(name):
        fail(f"a schedule named {name!r} exists: use `scheduler schedules update {name}`")
    api.upsert_schedule(definition)
    if as_json:
        print_json(to_mapping(definition))
    else:
        click.echo(f"created schedule {name} ({describe_when(definition)})")


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
    current = from_row(load_schedule(name))
    changed = apply_flags(current, flags)
    outcome = api.upsert_schedule(changed)
    if as_json:
        print_json({"name": name, "outcome": outcome.value, "definition": to_mapping(changed)})
    else:
        click.echo(f"schedule {name}: {outcome.value}")


def _set_enabled(name: str, enabled: bool) -> None:
    current = from_row(load_schedule(name))
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
    load_schedule(name)
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
        print_json(listing(row))
    else:
        click.echo(f"schedule {name} paused by {row['paused_by']}: {row['paused_reason']}")


@schedules.command("resume")
@click.argument("name")
@json_option
def resume(name: str, as_json: bool) -> None:
    """Resume schedule NAME: enable it from its next slot (no catch-up for the paused time)."""
    row = api.resume_schedule(name, actor=os_user())
    if as_json:
        print_json(listing(row))
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
    tz = load_schedule(name)["timezone"]
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
