"""`scheduler services up|down|status` and `scheduler db upgrade|downgrade|current|roles`."""

from __future__ import annotations

import click

from config.settings import get_settings
from scheduler.cli.common import json_option, print_json, run_db
from scheduler.runtime import migrate
from scheduler.runtime.embedded import EmbeddedServices
from scheduler.runtime.urls import redact, resolve_database_url


@click.group()
def services() -> None:
    """Embedded PostgreSQL and Redis (used when DATABASE_URL / BROKER_URL are unset)."""


@services.command("up")
@json_option
def services_up(as_json: bool) -> None:
    """Start the embedded servers (reuses running ones) and print their URLs."""
    urls = EmbeddedServices(get_settings().state_dir).up()
    if as_json:
        print_json({"database_url": urls.database_url, "broker_url": urls.broker_url})
        return
    click.echo(f"postgres: {urls.database_url}")
    click.echo(f"redis:    {urls.broker_url}")


@services.command("down")
def services_down() -> None:
    """Stop the embedded servers; their data stays under the state directory."""
    EmbeddedServices(get_settings().state_dir).down()
    click.echo("embedded services stopped")


@services.command("status")
@json_option
def services_status(as_json: bool) -> None:
    """Show whether the embedded servers run, and where."""
    status = EmbeddedServices(get_settings().state_dir).status()
    if as_json:
        print_json(status)
        return
    for name in ("postgres", "redis"):
        item = status[name]
        state = "running" if item["running"] else "stopped"
        click.echo(f"{name:<9}{state:<9}{item['url'] or ''}")


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    url = resolve_database_url()
    run_db(lambda: migrate.upgrade(url, revision))
    click.echo(f"database at {run_db(lambda: migrate.current(url))} ({redact(url)})")


@db.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (default: one step; `base` removes everything)."""
    url = resolve_database_url()
    run_db(lambda: migrate.downgrade(url, revision))
    click.echo(f"database at {run_db(lambda: migrate.current(url)) or 'base'} ({redact(url)})")


@db.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """Print the database's revision and the newest one the code knows."""
    url = resolve_database_url()
    current = run_db(lambda: migrate.current(url))
    head = migrate.head_revision()
    if as_json:
        print_json({"current": current, "head": head, "up_to_date": current == head})
        return
    note = "up to date" if current == head else f"behind: run `scheduler db upgrade` ({head})"
    click.echo(f"{current or 'base'} ({note})")


@db.command("roles")
@click.option("--apply", "apply_", is_flag=True, help="Run the statements (needs a role that may).")
@click.option("--prefix", default="scheduler_", show_default=True, help="Role name prefix.")
def db_roles(apply_: bool, prefix: str) -> None:
    """Print (or apply) the GRANTs of four group roles: PREFIXbeat, PREFIXworker,
    PREFIXoperator (also edits schedules) and PREFIXreadonly (history, stats, lists).

    \b
    The roles cannot log in: grant one to each login user, e.g.
      CREATE ROLE beat_host1 LOGIN PASSWORD '...' IN ROLE scheduler_beat;
    Run `db upgrade` as the owner of the tables, never as one of these roles.
    """
    from scheduler.core.exceptions import InvalidScheduleError
    from scheduler.runtime.db import get_runtime
    from scheduler.store.roles import apply_statements, role_statements

    try:
        statements = role_statements(prefix)
    except ValueError as exc:
        raise InvalidScheduleError(str(exc)) from None
    if not apply_:
        for statement in statements:
            click.echo(f"{statement};")
        return

    async def run() -> None:
        async with get_runtime().sessions() as session, session.begin():
            await apply_statements(session, statements)

    run_db(run)
    click.echo(
        f"applied {len(statements)} statements: roles {prefix}beat, {prefix}worker, "
        f"{prefix}operator, {prefix}readonly"
    )
