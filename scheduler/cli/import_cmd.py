"""`scheduler import celery|redbeat|django-celery-beat`: schedules from other beats."""

from __future__ import annotations

import click

from scheduler import api
from scheduler.api.importers import (
    from_celery_app,
    from_django_celery_beat,
    from_redbeat,
)
from scheduler.cli.common import fail, json_option, print_json, run_db, stacked
from scheduler.core.bounds import plain
from scheduler.core.celery_entries import ImportPlan
from scheduler.core.definitions import validate
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.runtime.registry import registered_tasks


def _apply(
    plan: ImportPlan, *, dry_run: bool, update: bool, as_json: bool, allow_partial: bool
) -> None:
    """Validate, then write in one transaction. Entries refused (unmapped or invalid) stop
    the whole import, nothing written, unless `allow_partial`."""
    registered = registered_tasks()
    unmapped = list(plan.unmapped)
    valid = []
    for definition in plan.definitions:
        try:
            valid.append(validate(definition, registered))
        except InvalidScheduleError as exc:
            unmapped.append((definition.name, str(exc)))
    refused = bool(unmapped) and not allow_partial
    writes = not (dry_run or refused)
    changes = run_db(lambda: api.areconcile(valid, update_existing=update, dry_run=not writes))
    created, updated = changes["create"], changes["update"]
    unchanged, differing = sorted(changes["unchanged"]), sorted(changes["existing"])
    if as_json:
        print_json(
            {
                "created": created,
                "updated": updated,
                "unchanged": unchanged,
                "differing": differing,
                "existing": sorted(unchanged + differing),
                "unmapped": [{"name": n, "reason": r} for n, r in unmapped],
                "notes": [{"name": n, "note": r} for n, r in plan.notes],
                "skipped": [{"name": n, "reason": r} for n, r in plan.skipped],
                "dry_run": dry_run,
                "written": writes,
            }
        )
    else:
        verb = "created" if writes else "would create"
        for name in created:
            click.echo(f"+ {plain(name)}")
        for name in updated:
            click.echo(f"~ {plain(name)}")
        for name in unchanged:
            click.echo(f"= {plain(name)} (exists, unchanged)")
        for name in differing:
            click.echo(f"* {plain(name)} (exists, differs; --update to overwrite)")
        for name, note in plan.notes:
            click.echo(f"  note {plain(name)}: {plain(note)}")
        for name, reason in plan.skipped:
            click.echo(f"- {plain(name)}: {reason}")
        for name, reason in unmapped:
            click.echo(f"! {plain(name)}: {plain(reason)}")
        click.echo(
            f"{verb} {len(created)}, {'updated' if writes else 'would update'} {len(updated)}, "
            f"unchanged {len(unchanged)}, differing {len(differing)}, refused {len(unmapped)}"
        )
    if refused:
        fail(
            f"{len(unmapped)} of {len(unmapped) + len(valid)} entries cannot be imported, "
            "so nothing was written: fix them, or pass --allow-partial to import the rest"
        )


_plan_options = stacked(
    [
        click.option("--dry-run", is_flag=True, help="Show what would be imported, write nothing."),
        click.option("--update", is_flag=True, help="Overwrite schedules that already exist."),
        click.option(
            "--allow-partial",
            is_flag=True,
            help="Import the entries that map even when others are refused (exit 0).",
        ),
        json_option,
    ]
)
"""--dry-run, --update, --allow-partial and --json: what every importer takes."""


@click.group("import")
def import_() -> None:
    """Import schedules from another beat (Celery's beat_schedule, RedBeat, django-celery-beat)."""


@import_.command("celery")
@click.argument("target")
@_plan_options
def import_celery(
    target: str, dry_run: bool, update: bool, allow_partial: bool, as_json: bool
) -> None:
    """The `beat_schedule` of the Celery app at TARGET (MODULE:APP).

    Crontab entries keep Celery's meaning: day of month AND day of week (day_match all).
    Exits 2, writing nothing, when some entries cannot be imported, unless --allow-partial."""
    plan = from_celery_app(target)
    _apply(plan, dry_run=dry_run, update=update, as_json=as_json, allow_partial=allow_partial)


@import_.command("redbeat")
@click.option("--redis", "redis_url", help="RedBeat's Redis URL (default: BROKER_URL).")
@click.option("--key-prefix", default="redbeat:", show_default=True)
@_plan_options
def import_redbeat(
    redis_url: str | None,
    key_prefix: str,
    dry_run: bool,
    update: bool,
    allow_partial: bool,
    as_json: bool,
) -> None:
    """RedBeat's entries, read with RedBeat's own classes.

    Crontab entries keep Celery's meaning: day of month AND day of week (day_match all).
    Exits 2, writing nothing, when some entries cannot be imported, unless --allow-partial."""
    from scheduler.runtime.urls import resolve_broker_url

    plan = from_redbeat(redis_url or resolve_broker_url(), key_prefix)
    _apply(plan, dry_run=dry_run, update=update, as_json=as_json, allow_partial=allow_partial)


@import_.command("django-celery-beat")
@click.option("--database-url", required=True, help="The Django project's PostgreSQL URL.")
@_plan_options
def import_django(
    database_url: str, dry_run: bool, update: bool, allow_partial: bool, as_json: bool
) -> None:
    """django-celery-beat's periodic tasks (its tables read with SQL; no Django needed).

    Crontab entries keep Celery's meaning: day of month AND day of week (day_match all);
    headers and expire_seconds are carried, exchange/routing_key reported per entry.
    Exits 2, writing nothing, when some entries cannot be imported, unless --allow-partial."""
    if not database_url.strip():
        fail("--database-url is empty: give the Django project's PostgreSQL URL")
    plan = run_db(lambda: from_django_celery_beat(database_url))
    _apply(plan, dry_run=dry_run, update=update, as_json=as_json, allow_partial=allow_partial)
