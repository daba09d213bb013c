"""What every command shares: one-line errors with exit code 2, `--json`, the database."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn, TypeVar
from uuid import UUID

import click

from scheduler.core.bounds import plain
from scheduler.core.exceptions import SchedulerError
from scheduler.runtime.retry import error_chain, sqlstate, unreachable
from scheduler.runtime.urls import redact, redact_text

T = TypeVar("T")
USER_ERROR = 2
log = logging.getLogger("scheduler.cli")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def stacked(options: Sequence[Decorator]) -> Decorator:
    """One decorator made of click options, in the order they are to appear in --help."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def fail(message: str) -> NoReturn:
    """Stop the command with one line on stderr and exit code 2."""
    raise click.exceptions.Exit(_print_error(message))


def _print_error(message: str) -> int:
    click.secho(f"error: {plain(message)}", fg="red", err=True)
    return USER_ERROR


def debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug")) or bool(
        os.environ.get("SCHEDULER_DEBUG")
    )


def explain(exc: BaseException) -> str:
    """Turn an exception into the one line a user sees, secrets and control characters out."""
    return plain(redact_text(_explain(exc))).replace("\n", " ")


def _explain(exc: BaseException) -> str:
    """By class: the project's own errors carry their line; database errors are told apart
    by their SQLSTATE (PostgreSQL's error class), never by the words of their message."""
    if isinstance(exc, SchedulerError):
        return str(exc)
    name = type(exc).__name__
    text = f"{name}: {exc}".strip()
    state = sqlstate(exc)
    if state == "3D000":  # invalid_catalog_name
        return f"{_reason(exc)}: create it, or point DATABASE_URL at an existing database"
    if state == "42P01":  # undefined_table
        return "the database has no schema: run `scheduler db upgrade`"
    if state is not None and state[:2] in ("08", "53", "57"):  # connection, resources, shutdown
        return f"cannot reach the database: {_reason(exc)}"
    if state is not None and state[:2] in ("22", "23"):  # data exception, integrity violation
        return f"the database refused a value: {_reason(exc)}"
    if unreachable(exc):
        reason = redact(str(exc)) or name
        return f"cannot reach the database or broker ({reason}): check DATABASE_URL / BROKER_URL"
    if isinstance(exc, OverflowError):
        return f"a number is out of range: {exc}"
    if isinstance(exc, TypeError | ValueError):
        return (
            f"a value has the wrong type or form: {str(exc).splitlines()[0] if str(exc) else name}"
        )
    return text.splitlines()[0] if text else name


def _reason(exc: BaseException) -> str:
    """The database's own line, without SQLAlchemy's `(module.Class)` prefix or its SQL."""
    chain = error_chain(exc)
    innermost = chain[-1] if chain else exc
    line = (str(innermost) or type(innermost).__name__).splitlines()[0]
    return redact(line.split(") ", 1)[-1] if line.startswith("(") else line)


def run_db(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on this process's runtime (one loop, one pooled engine)."""
    from scheduler.runtime.db import get_runtime

    return get_runtime().run(coro_factory())


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


class FriendlyGroup(click.Group):
    """A group whose commands turn every failure into one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            if debug_enabled():
                raise
            log.debug("command failed", exc_info=True)
            raise click.exceptions.Exit(_print_error(explain(exc))) from None
