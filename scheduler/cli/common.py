"""What every command shares: one-line errors with exit code 2, `--json`, the database."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn, TypeVar
from uuid import UUID

import click

from scheduler.bounds import plain
from scheduler.exceptions import SchedulerError
from scheduler.services import redact, redact_text

T = TypeVar("T")
USER_ERROR = 2
log = logging.getLogger("scheduler.cli")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


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
    if isinstance(exc, SchedulerError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}".strip()
    name = type(exc).__name__
    module = type(exc).__module__
    if isinstance(exc, (ConnectionError, OSError, TimeoutError)) or "asyncpg" in module:
        if "does not exist" in str(exc) and "database" in str(exc):
            return f"{exc}: create it, or point DATABASE_URL at an existing database"
        if "relation" in str(exc) and "does not exist" in str(exc):
            return "the database has no schema: run `scheduler db upgrade`"
        reason = redact(str(exc)) or name
        return f"cannot reach the database or broker ({reason}): check DATABASE_URL / BROKER_URL"
    if "sqlalchemy" in module and (
        "UndefinedTable" in text or ("relation" in text and "does not exist" in text)
    ):
        return "the database has no schema: run `scheduler db upgrade`"
    if "sqlalchemy" in module and ("connect" in text.lower() or "OperationalError" in name):
        return f"cannot reach the database: {text.splitlines()[0]}"
    if ("sqlalchemy" in module and "DBAPIError" in text) or "DataError" in name:
        reason = str(getattr(exc, "orig", "") or exc).splitlines()[0]
        reason = reason.split(") ", 1)[-1] if reason.startswith("(") else reason
        return f"the database refused a value: {reason}"
    if isinstance(exc, OverflowError):
        return f"a number is out of range: {exc}"
    if isinstance(exc, TypeError | ValueError):
        return (
            f"a value has the wrong type or form: {str(exc).splitlines()[0] if str(exc) else name}"
        )
    return text.splitlines()[0] if text else name


def run_db(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on this process's runtime (one loop, one pooled engine)."""
    from scheduler.db import get_runtime

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
