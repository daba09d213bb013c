"""One statement on a test's engine, rows as dicts."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def sql(engine: AsyncEngine, statement: str, **params: object) -> list[dict[str, object]]:
    async with engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [dict(r) for r in result.mappings()] if result.returns_rows else []
