"""`scheduler import celery|redbeat|django-celery-beat`: schedules from other beats."""

from __future__ import annotations

import click

from scheduler import api
from scheduler.bounds import plain
from scheduler.cli.common import json_option, print_json, run_db
from scheduler.exceptions import InvalidScheduleError
from scheduler.importers import (
    ImportPlan,
    from_celery_app,
    from_django_celery_beat,
    from_redbeat,
)
from scheduler.schedules import registered_tasks, validate


def _apply(plan: ImportPlan, *, dry_run: bool, update: bool, as_json: bool) -> None:
    registered = registered_tasks()
    unmapped = list(plan.unmapped)
    valid = []
    for definition in plan.definitions:
        try:
            valid.append(validate(definition, registered))
        except InvalidScheduleError as exc:
            unmapped.append((definition.name, str(exc)))
    changes = run_db(lambda: api.areconcile(valid, update_existing=update, dry_run=dry_run))
    created, updated = changes["create"], changes["update"]
    existing = sorted(changes["existing"] + changes["unchanged"])
    if as_json:
        print_json(
            {
                "created": created,
                "updated": updated,
                "existing": existing,
                "unmapped": [{"name": n, "reason": r} for n, r in unmapped],
                "dry_run": dry_run,
            }
        )
        return
    verb = "would create" if dry_run else "created"
    for name in created:
        click.echo(f"+ {plain(name)}")
    for name in updated:
        click.echo(f"~ {plain(name)}")
    for name in existing:
        click.echo(f"= {plain(name)} (exists; --update to overwrite)")
    for name, reason in unmapped:
        click.echo(f"! {plain(name)}: {plain(reason)}")
    click.echo(
        f"{verb} {len(created)}, updated {len(updated)}, existing {len(existing)}, "
        f"not mapped {len(unmapped)}"
    )


@click.group("import")
def import_() -> None:
    """Import schedules from another beat (Celery's beat_schedule, RedBeat, django-celery-beat)."""


@import_.command("celery")
@click.argument("target")
@click.option("--dry-run", is_flag=True, help="Show what would be imported, write nothing.")
@click.option("--update", is_flag=True, help="Overwrite schedules that already exist.")
@json_option
def import_celery(target: str, dry_run: bool, update: bool, as_json: bool) -> None:
    """The `beat_schedule` of the Celery app at TARGET (MODULE:APP)."""
    _apply(from_celery_app(target), dry_run=dry_run, update=update, as_json=as_json)


@import_.command("redbeat")
@click.option("--redis", "redis_url", help="RedBeat's Redis URL (default: BROKER_URL).")
@click.option("--key-prefix", default="redbeat:", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would be imported, write nothing.")
@click.option("--update", is_flag=True, help="Overwrite schedules that already exist.")
@json_option
def import_redbeat(
    redis_url: str | None, key_prefix: str, dry_run: bool, update: bool, as_json: bool
) -> None:
    """RedBeat's entries, read with RedBeat's own classes."""
    from scheduler.services import resolve_broker_url

    plan = from_redbeat(redis_url or resolve_broker_url(), key_prefix)
    _apply(plan, dry_run=dry_run, update=update, as_json=as_json)


@import_.command("django-celery-beat")
@click.option("--database-url", required=True, help="The Django project's PostgreSQL URL.")
@click.option("--dry-run", is_flag=True, help="Show what would be imported, write nothing.")
@click.option("--update", is_flag=True, help="Overwrite schedules that already exist.")
@json_option
def import_django(database_url: str, dry_run: bool, update: bool, as_json: bool) -> None:
    """django-celery-beat's periodic tasks (its tables read with SQL; no Django needed)."""
    plan = run_db(lambda: from_django_celery_beat(database_url))
    _apply(plan, dry_run=dry_run, update=update, as_json=as_json)
