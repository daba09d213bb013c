"""One statement on a test's engine, rows as dicts; a plain asyncpg connection to a test's
database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def sql(engine: AsyncEngine, statement: str, **params: object) -> list[dict[str, object]]:
    async with engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [dict(r) for r in result.mappings()] if result.returns_rows else []


def plain_dsn(url: str) -> str:
    """A database URL as asyncpg takes it (no SQLAlchemy driver name)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection to `url`, closed on the way out."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        yield conn
    finally:
        await conn.close()
