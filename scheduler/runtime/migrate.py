"""Alembic, driven from Python: `scheduler db upgrade|downgrade|current` and the tests."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import migrations
from scheduler.core.exceptions import ConfigurationError

T = TypeVar("T")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _with_connection(url: str, fn: Callable[[Connection], T]) -> T:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.run_sync(fn)
            await conn.commit()
            return result
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(url: str, revision: str = "head") -> None:
    await _with_connection(url, partial(_upgrade, revision=revision))


async def downgrade(url: str, revision: str = "-1") -> None:
    await _with_connection(url, partial(_downgrade, revision=revision))


async def current(url: str) -> str | None:
    return await _with_connection(url, _current)


async def ensure_current(url: str) -> None:
    """Raise a one-line error unless the database is at the newest revision."""
    found = await current(url)
    head = head_revision()
    if found != head:
        where = "has no schema" if found is None else f"is at revision {found}, not {head}"
        raise ConfigurationError(f"the database {where}: run `scheduler db upgrade`")
