"""The audit trail of the dashboard and the API: who did what, when."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.store.models import (
    AuditEntry,
)


class AuditStore:
    """Audit entries. Stateless: every method is static and takes the caller's session;
    none commits."""

    @staticmethod
    async def add_audit(
        session: AsyncSession,
        *,
        actor: str,
        action: str,
        target_type: str,
        target: str | None,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        await session.execute(
            insert(AuditEntry).values(
                actor=actor,
                action=action,
                target_type=target_type,
                target=target,
                reason=reason,
                detail=json.loads(json.dumps(dict(detail or {}), default=str)),
            )
        )

    @staticmethod
    async def add_audits(
        session: AsyncSession, entries: Sequence[Mapping[str, Any]], *, chunk: int = 1000
    ) -> None:
        """Many audit entries (each with `add_audit`'s keywords) in multi-row statements."""
        rows = [
            {
                "actor": e["actor"],
                "action": e["action"],
                "target_type": e["target_type"],
                "target": e.get("target"),
                "reason": e.get("reason"),
                "detail": json.loads(json.dumps(dict(e.get("detail") or {}), default=str)),
            }
            for e in entries
        ]
        for start in range(0, len(rows), chunk):
            # the Core table and a list of parameter sets: compiled once, sent as multi-row
            # INSERTs (a 1,000-row `.values(rows)` costs about half a second to compile)
            await session.execute(
                insert(AuditEntry.metadata.tables[AuditEntry.__tablename__]),
                rows[start : start + chunk],
            )

    @staticmethod
    async def audit_entries(
        session: AsyncSession,
        *,
        since: datetime | None = None,
        before_id: int | None = None,
        target_type: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first; `before_id` pages back."""
        stmt = select(AuditEntry.__table__).order_by(AuditEntry.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
        if before_id is not None:
            stmt = stmt.where(AuditEntry.id < before_id)
        if target_type is not None:
            stmt = stmt.where(AuditEntry.target_type == target_type)
        if target is not None:
            stmt = stmt.where(AuditEntry.target == target)
        result = await session.execute(stmt)
        return [dict(r) for r in result.mappings()]
