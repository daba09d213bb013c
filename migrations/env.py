"""Alembic environment, async (asyncpg).

Called two ways: by `scheduler.runtime.migrate` with an open connection in
`config.attributes["connection"]`, or by the plain `alembic` command, which gets its URL
from the project settings (DATABASE_URL or the embedded PostgreSQL).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from scheduler.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from scheduler.runtime.urls import resolve_database_url

    asyncio.run(_run_async(resolve_database_url()))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `scheduler db upgrade`")
run_migrations_online()
