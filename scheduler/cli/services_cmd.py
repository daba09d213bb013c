"""`scheduler services up|down|status` and `scheduler db upgrade [--online]|downgrade|current|roles`."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from types import FrameType

import click

from config.settings import get_settings
from scheduler.cli.common import fail, json_option, print_json, run_db
from scheduler.core.exceptions import MigrationStopped
from scheduler.runtime import migrate, migrate_online, online_sql
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
@click.option(
    "--online",
    is_flag=True,
    help="Reach revision 0009 (partitioned executions) in steps while beats and workers write.",
)
@click.option(
    "--batch",
    type=int,
    default=None,
    help=f"With --online: rows per copy transaction (default {migrate_online.DEFAULT_BATCH}).",
)
@click.option("--copy-only", is_flag=True, help="With --online: stop before the switch.")
@click.option(
    "--restart", is_flag=True, help="With --online: drop a copy begun earlier, copy anew."
)
@json_option
def db_upgrade(
    revision: str,
    online: bool,
    batch: int | None,
    copy_only: bool,
    restart: bool,
    as_json: bool,
) -> None:
    """Migrate the database up to REVISION (default: the newest).

    With --online, a database at 0008 moves to 0009 without holding the table lock for the
    copy: `executions_next` is built beside `executions`, a trigger repeats every write on it,
    the rows are copied in batches by id (one transaction each, progress on stderr), then one
    short transaction switches the tables (waiting at most 2 s for the lock, tried again) and
    keeps the old one as `executions_old` (drop it when satisfied). A database below 0008 is
    first upgraded to it as usual; revisions after 0009 follow as usual.

    \b
    Old beats cannot dispatch after the switch, new beats start only at 0009:
    replace the beats then (or stop them, run again after --copy-only, start
    the new ones). Workers keep running. Stopped (SIGTERM, Ctrl-C) or killed,
    the database stays at 0008 and in use; run the command again to resume the
    copy. docs/OPERATIONS.md has the whole procedure and its figures.
    """
    url = resolve_database_url()
    if not online:
        if batch is not None or copy_only or restart:
            fail("--batch, --copy-only and --restart go with --online")
        run_db(lambda: migrate.upgrade(url, revision))
        current = run_db(lambda: migrate.current(url))
        if as_json:
            print_json({"revision": current, "online": False})
            return
        click.echo(f"database at {current} ({redact(url)})")
        return
    report = _upgrade_online(
        url,
        revision,
        batch=migrate_online.DEFAULT_BATCH if batch is None else batch,
        copy_only=copy_only,
        restart=restart,
    )
    if as_json:
        print_json({"online": True, **dataclasses.asdict(report)})
        return
    if report.moved and not report.switched:
        click.echo(
            f"copy done, {report.rows} rows; database at {report.revision} ({redact(url)}):"
            " run again without --copy-only to switch"
        )
        return
    click.echo(f"database at {report.revision} ({redact(url)})")
    if report.switched:
        click.echo(f"the previous table is kept as {online_sql.OLD}: drop it when satisfied")


def _upgrade_online(
    url: str, revision: str, *, batch: int, copy_only: bool, restart: bool
) -> migrate_online.OnlineReport:
    """The online upgrade, its progress on stderr; the first SIGTERM or Ctrl-C stops it
    after the transaction under way (exit code 128 + the signal), a second one at once."""
    stop = threading.Event()
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        caught.append(signum)
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        click.echo("stopping after the transaction under way ...", err=True)

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        return run_db(
            lambda: migrate_online.upgrade(
                url,
                revision,
                batch=batch,
                copy_only=copy_only,
                restart=restart,
                stop=stop,
                on_progress=_ProgressLines(),
            )
        )
    except MigrationStopped as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(128 + (caught[0] if caught else signal.SIGTERM)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _ProgressLines:
    """Each step's line on stderr; the copy's at most once a second, and its last."""

    def __init__(self) -> None:
        self.shown_at = 0.0

    def __call__(self, progress: migrate_online.Progress) -> None:
        if progress.step is migrate_online.Step.COPY and not progress.note:
            now = time.monotonic()
            if now - self.shown_at < 1.0:
                return
            self.shown_at = now
            share = progress.rows_read / max(progress.rows_estimate, 1)
            line = (
                f"{progress.rows_read} of ~{progress.rows_estimate} rows ({share:.0%}),"
                f" {progress.rows_per_s:.0f} rows/s"
            )
        else:
            line = progress.note
        click.echo(f"{progress.step}: {line}", err=True)


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
