"""Alert rules and their deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import DuplicateError
from scheduler.store.models import (
    NotificationDelivery,
    NotificationRule,
)

_RULE_COLUMNS = (
    "name",
    "schedules",
    "events",
    "webhook_url",
    "task",
    "late_after_s",
    "stale_after_s",
    "only_final_attempt",
    "enabled",
    "created_at",
)


class AlertStore:
    """Alert rules and deliveries. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

    @staticmethod
    async def insert_rule(session: AsyncSession, values: Mapping[str, Any]) -> int:
        result = await session.execute(
            pg_insert(NotificationRule)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[NotificationRule.name])
            .returning(NotificationRule.id)
        )
        new_id = result.scalar()
        if new_id is None:
            raise DuplicateError(f"an alert rule named {values['name']!r} exists: remove it first")
        return int(new_id)

    @staticmethod
    async def list_rules(session: AsyncSession) -> list[dict[str, Any]]:
        """Every rule (secrets left out) with its delivery counts."""
        sent = func.count().filter(NotificationDelivery.status == "sent")
        pending = func.count().filter(NotificationDelivery.status == "pending")
        stmt = (
            select(
                *(getattr(NotificationRule, c) for c in _RULE_COLUMNS),
                (NotificationRule.secret.is_not(None)).label("signed"),
                sent.label("sent"),
                pending.label("pending"),
            )
            .outerjoin(NotificationDelivery, NotificationDelivery.rule_id == NotificationRule.id)
            .group_by(NotificationRule.id)
            .order_by(NotificationRule.name)
        )
        return [dict(row) for row in (await session.execute(stmt)).mappings()]

    @staticmethod
    async def get_rule(session: AsyncSession, name: str) -> dict[str, Any] | None:
        result = await session.execute(
            select(NotificationRule.__table__).where(NotificationRule.name == name)
        )
        row = result.mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    async def delete_rule(session: AsyncSession, name: str) -> bool:
        result = await session.execute(
            delete(NotificationRule)
            .where(NotificationRule.name == name)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def insert_delivery(session: AsyncSession, values: Mapping[str, Any]) -> uuid.UUID:
        result = await session.execute(
            pg_insert(NotificationDelivery).values(**values).returning(NotificationDelivery.id)
        )
        return uuid.UUID(str(result.scalar_one()))

    @staticmethod
    async def insert_stale(session: AsyncSession, *, limit: int) -> int:
        """One `stale` delivery per rule and schedule whose last success (or, never having
        succeeded, its creation) is older than the rule's `stale_after_s`: keyed by that
        success, so a schedule stale for days pages once until it succeeds again."""
        result = await session.execute(
            text(
                "INSERT INTO notification_deliveries"
                " (rule_id, event, event_key, schedule_id, execution_id, payload)"
                " SELECT r.id, 'stale', s.id::text || ':' || coalesce(ok.id::text, 'never'),"
                "  s.id, ok.id, jsonb_build_object('event', 'stale', 'rule', r.name,"
                "  'schedule', s.name, 'execution_id', ok.id::text, 'status', 'stale',"
                "  'scheduled_for', ok.scheduled_for, 'error_message', NULL)"
                " FROM notification_rules r"
                " JOIN schedules s ON s.enabled AND s.name ~ r.schedules_regex"
                " LEFT JOIN LATERAL (SELECT e.id, e.scheduled_for, e.completed_at"
                "   FROM executions e WHERE e.schedule_id = s.id AND e.status_id = :success"
                "   ORDER BY e.created_at DESC LIMIT 1) ok ON true"
                " WHERE r.enabled AND 'stale' = ANY (r.events) AND r.stale_after_s IS NOT NULL"
                "  AND coalesce(ok.completed_at, s.created_at)"
                "      < now() - make_interval(secs => r.stale_after_s)"
                " LIMIT :limit"
                " ON CONFLICT (rule_id, event, event_key) DO NOTHING"
            ),
            {"success": ExecutionStatus.SUCCESS.id, "limit": limit},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def lock_due_deliveries(session: AsyncSession, *, limit: int) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, locked (SKIP LOCKED: each goes out from
        one process only), with their rule's target and secret."""
        result = await session.execute(
            select(
                NotificationDelivery.id,
                NotificationDelivery.event,
                NotificationDelivery.payload,
                NotificationDelivery.attempts,
                NotificationRule.webhook_url,
                NotificationRule.task,
                NotificationRule.secret,
            )
            .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
            .where(
                NotificationDelivery.status == "pending",
                NotificationDelivery.next_attempt_at <= func.now(),
            )
            .order_by(NotificationDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(of=NotificationDelivery, skip_locked=True)
        )
        return [dict(row) for row in result.mappings()]

    @staticmethod
    async def mark_delivery(
        session: AsyncSession,
        delivery_id: uuid.UUID,
        *,
        sent: bool,
        error: str | None,
        retry_in_s: float,
    ) -> None:
        values: dict[str, Any] = {
            "attempts": NotificationDelivery.attempts + 1,
            "last_error": error,
        }
        if sent:
            values.update(status="sent", sent_at=func.now())
        else:
            values["next_attempt_at"] = func.now() + func.make_interval(
                0, 0, 0, 0, 0, 0, retry_in_s
            )
        await session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    async def deliveries(
        session: AsyncSession, *, rule: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        stmt = (
            select(
                NotificationDelivery.id,
                NotificationRule.name.label("rule"),
                NotificationDelivery.event,
                NotificationDelivery.event_key,
                NotificationDelivery.execution_id,
                NotificationDelivery.status,
                NotificationDelivery.attempts,
                NotificationDelivery.last_error,
                NotificationDelivery.created_at,
                NotificationDelivery.sent_at,
            )
            .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
            .order_by(NotificationDelivery.created_at.desc())
            .limit(limit)
        )
        if rule is not None:
            stmt = stmt.where(NotificationRule.name == rule)
        return [dict(row) for row in (await session.execute(stmt)).mappings()]
