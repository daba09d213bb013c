"""`scheduler web` (the dashboard), its users and tokens, and `scheduler audit`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from scheduler import api
from scheduler.cli.common import fail, json_option, print_json
from scheduler.cli.format import console, dashboard_url, local_time

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
ROLE = click.Choice(["viewer", "operator", "admin"])


@click.group(invoke_without_command=True)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.pass_context
def web(ctx: click.Context, host: str, port: int, loglevel: str) -> None:
    """Serve the dashboard and its JSON API (/api/v1).

    \b
    Without any user or token it serves only on a loopback address, to anyone there as
    admin; on any other address it refuses to start until a user exists:
      scheduler web users add alice --role admin --password-stdin
    """
    if ctx.invoked_subcommand is not None:
        return
    from scheduler.cli.processes import prepare
    from scheduler.web.auth import is_loopback

    prepare(upgrade=False)
    has_accounts = api.has_accounts()
    if not has_accounts and not is_loopback(host):
        fail(
            f"no dashboard user exists: refusing to serve on {host}; add one with "
            "`scheduler web users add NAME --role admin --password-stdin`, or use --host 127.0.0.1"
        )
    serve(host, port, loglevel=loglevel, announce=not has_accounts)


def serve(host: str, port: int, *, loglevel: str = "info", announce: bool = False) -> None:
    import uvicorn

    from scheduler.web import create_app

    click.echo(f"dashboard: {dashboard_url(host, port)}")
    if announce:
        click.echo(
            "no dashboard user exists: serving on loopback only, to anyone there as admin "
            "(add one with `scheduler web users add NAME --role admin --password-stdin`)"
        )
    uvicorn.run(
        create_app(),
        host=host,
        port=port,
        log_level=loglevel.lower(),
        proxy_headers=False,
        server_header=False,
    )


@web.group()
def users() -> None:
    """Dashboard users: viewer reads; operator also runs, pauses, retries; admin edits."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLE, required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(name: str, role: str, password_stdin: bool) -> None:
    """Add user NAME (the password is stored as a scrypt hash)."""
    if not password_stdin:
        fail("give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    api.add_user(name, role, password, actor=api.default_actor())
    click.echo(f"user {name} added ({role})")


@users.command("list")
@json_option
def users_list(as_json: bool) -> None:
    """List dashboard users."""
    rows = api.list_users()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['role']}\t{local_time(row['created_at'])}")


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Remove user NAME (their sessions end at their next request)."""
    api.remove_user(name, actor=api.default_actor())
    click.echo(f"user {name} removed")


@web.group()
def tokens() -> None:
    """API tokens, sent as `Authorization: Bearer TOKEN`."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=ROLE, required=True)
@json_option
def tokens_create(name: str, role: str, as_json: bool) -> None:
    """Create an API token NAME with ROLE; it is shown once, only its hash is kept."""
    token = api.create_token(name, role, actor=api.default_actor())
    if as_json:
        print_json({"name": name, "role": role, "token": token})
        return
    click.echo(token)
    click.echo("store it now: it is shown once, only its hash is kept", err=True)


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since {text!r}: use a duration like 24h or 7d, or an ISO time")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command("audit")
@click.option("--since", default=None, help="A duration (24h, 7d) or an ISO time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
def audit(since: str | None, limit: int, as_json: bool) -> None:
    """Who changed what and when: schedules, runs, users (dashboard, CLI, Python API)."""
    entries: list[dict[str, Any]] = api.audit_log(since=_since(since), limit=limit)
    if as_json:
        print_json(entries)
        return
    out = console()
    for e in entries:
        reason = f"  reason: {e['reason']}" if e["reason"] else ""
        out.print(
            f"{local_time(e['at'])}  {e['actor']}  {e['action']}  "
            f"{e['target_type']} {e['target'] or ''}{reason}",
            markup=False,
            highlight=False,
        )
