"""Web users and API tokens (hashes only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.store.models import (
    WebToken,
    WebUser,
)


class AccountStore:
    """Users and tokens. Stateless: every method is static and takes the caller's session;
    none commits."""

    @staticmethod
    async def add_user(session: AsyncSession, name: str, role: str, password_hash: str) -> bool:
        """False when the name is taken."""
        result = await session.execute(
            text(
                "INSERT INTO web_users (name, role, password_hash) VALUES (:n, :r, :h) "
                "ON CONFLICT (name) DO NOTHING RETURNING name"
            ),
            {"n": name, "r": role, "h": password_hash},
        )
        return result.scalar() is not None

    @staticmethod
    async def users(session: AsyncSession) -> list[dict[str, Any]]:
        result = await session.execute(
            select(WebUser.name, WebUser.role, WebUser.created_at).order_by(WebUser.name)
        )
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def user(session: AsyncSession, name: str) -> dict[str, Any] | None:
        result = await session.execute(select(WebUser.__table__).where(WebUser.name == name))
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def remove_user(session: AsyncSession, name: str) -> bool:
        result = await session.execute(delete(WebUser).where(WebUser.name == name))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def has_accounts(session: AsyncSession) -> bool:
        """Any user or token: once one exists, every request needs credentials."""
        users = select(literal_column("1")).select_from(WebUser).limit(1).exists()
        tokens = select(literal_column("1")).select_from(WebToken).limit(1).exists()
        result = await session.execute(select(or_(users, tokens)))
        return bool(result.scalar())

    @staticmethod
    async def add_token(session: AsyncSession, name: str, role: str, token_hash: str) -> int:
        result = await session.execute(
            insert(WebToken)
            .values(name=name, role=role, token_hash=token_hash)
            .returning(WebToken.id)
        )
        return int(result.scalar_one())

    @staticmethod
    async def use_token(session: AsyncSession, token_hash: str) -> dict[str, Any] | None:
        """The token with this hash (its `last_used_at` set to now), or None."""
        result = await session.execute(
            update(WebToken)
            .where(WebToken.token_hash == token_hash)
            .values(last_used_at=func.now())
            .returning(WebToken.id, WebToken.name, WebToken.role)
        )
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def tokens(session: AsyncSession) -> list[dict[str, Any]]:
        result = await session.execute(
            select(
                WebToken.id, WebToken.name, WebToken.role, WebToken.created_at,
                WebToken.last_used_at,
            ).order_by(WebToken.id)
        )  # fmt: skip
        return [dict(r) for r in result.mappings()]

    @staticmethod
    async def remove_token(session: AsyncSession, token_id: int) -> bool:
        result = await session.execute(delete(WebToken).where(WebToken.id == token_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]
