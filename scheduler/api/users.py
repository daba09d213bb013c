"""Dashboard accounts: users with a password and API tokens, each with a role."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.api.audit import audit, audit_removal
from scheduler.api.units import blocking, unit, within
from scheduler.core import accounts
from scheduler.core.exceptions import DuplicateError, InvalidScheduleError, UserNotFound
from scheduler.store.accounts import AccountStore


async def aadd_user(
    name: str, role: str, password: str, *, actor: str | None = None,
    session: AsyncSession | None = None,
) -> None:  # fmt: skip
    """Create a dashboard user; the password is stored as a scrypt hash."""
    checked = _role(role)
    if not name.strip() or len(name) > 200:
        raise InvalidScheduleError("a user name must be 1 to 200 characters")
    if len(password) < 8:
        raise InvalidScheduleError("a password must be at least 8 characters")
    hashed = accounts.hash_password(password)
    async with unit(session) as s:
        if not await AccountStore.add_user(s, name, checked.value, hashed):
            raise DuplicateError(f"a user named {name!r} exists: remove it first")
        await audit(s, actor, "user.create", "user", name, detail={"role": checked.value})


async def alist_users(*, session: AsyncSession | None = None) -> list[dict[str, Any]]:
    return await within(session, AccountStore.users)


async def aremove_user(
    name: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> None:
    async with unit(session) as s:
        removed = await AccountStore.remove_user(s, name)
        await audit_removal(s, removed, UserNotFound(name), actor, "user.delete", "user", name)


async def acreate_token(
    name: str, role: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> str:
    """A new API token with `role`; returned once, stored only as a hash."""
    checked = _role(role)
    token = accounts.new_token()
    async with unit(session) as s:
        token_id = await AccountStore.add_token(s, name, checked.value, accounts.hash_token(token))
        await audit(
            s, actor, "token.create", "token", str(token_id),
            detail={"name": name, "role": checked.value},
        )  # fmt: skip
    return token


async def aauthenticate_password(
    name: str, password: str, *, session: AsyncSession | None = None
) -> accounts.Role | None:
    """The user's role when the password matches, else None (same cost either way)."""
    user = await within(session, AccountStore.user, name)
    stored = user["password_hash"] if user else accounts.DUMMY_HASH
    if accounts.verify_password(password, stored) and user is not None:
        return accounts.Role(user["role"])
    return None


async def aauthenticate_token(
    token: str, *, session: AsyncSession | None = None
) -> tuple[str, accounts.Role] | None:
    """(token name, role) of a valid token, recording its use; else None."""
    found = await within(session, AccountStore.use_token, accounts.hash_token(token))
    return None if found is None else (f"token:{found['name']}", accounts.Role(found["role"]))


async def auser_role(name: str, *, session: AsyncSession | None = None) -> accounts.Role | None:
    """The role of user `name`, or None when there is no such user (any more)."""
    user = await within(session, AccountStore.user, name)
    return None if user is None else accounts.Role(user["role"])


async def ahas_accounts(*, session: AsyncSession | None = None) -> bool:
    return await within(session, AccountStore.has_accounts)


def _role(role: str) -> accounts.Role:
    try:
        return accounts.Role(role)
    except ValueError:
        raise InvalidScheduleError(
            f"unknown role {role!r}: use viewer, operator or admin"
        ) from None


add_user = blocking(aadd_user)
list_users = blocking(alist_users)
remove_user = blocking(aremove_user)
create_token = blocking(acreate_token)
has_accounts = blocking(ahas_accounts)
