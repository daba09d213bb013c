"""Who changed what: every change the API makes writes one `audit_log` entry in the same
transaction, by the caller's `actor` (default: the OS user)."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.api.units import blocking, unit
from scheduler.core.exceptions import InvalidScheduleError, NotFoundError
from scheduler.store.audit import AuditStore


def default_actor() -> str:
    """Who a change is recorded as when the caller does not say: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def audit(
    session: AsyncSession,
    actor: str | None,
    action: str,
    target_type: str,
    target: str | None,
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await AuditStore.add_audit(
        session,
        actor=actor or default_actor(),
        action=action,
        target_type=target_type,
        target=target,
        reason=reason,
        detail=detail,
    )


async def audit_removal(
    session: AsyncSession,
    removed: bool,
    missing: NotFoundError,
    actor: str | None,
    action: str,
    target_type: str,
    target: str,
) -> None:
    """Raise `missing` when nothing was removed, else audit the removal."""
    if not removed:
        raise missing
    await audit(session, actor, action, target_type, target)


async def arecord_audit(
    action: str,
    target_type: str,
    target: str | None,
    *,
    actor: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    session: AsyncSession | None = None,
) -> None:
    """Write one `audit_log` entry (for changes made outside the API's functions)."""
    async with unit(session) as s:
        await audit(s, actor, action, target_type, target, reason=reason, detail=detail)


async def aaudit_log(
    *,
    since: datetime | None = None,
    before_id: int | None = None,
    target_type: str | None = None,
    target: str | None = None,
    limit: int = 100,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    """Audit entries newest first; page back with `before_id` (the last entry's id)."""
    if not 1 <= limit <= 1000:
        raise InvalidScheduleError("limit must be between 1 and 1000")
    async with unit(session) as s:
        return await AuditStore.audit_entries(
            s, since=since, before_id=before_id, target_type=target_type, target=target,
            limit=limit,
        )  # fmt: skip


audit_log = blocking(aaudit_log)
