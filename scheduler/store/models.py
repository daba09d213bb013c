"""SQLAlchemy tables, the public schema. The migrations create exactly these."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scheduler.core.domain import EARLIEST_INSTANT, LATEST_INSTANT, NON_TERMINAL, STATUS_IDS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NOTIFY_CHANNEL = "scheduler_schedules"
NON_TERMINAL_STATUS_IDS = tuple(sorted(STATUS_IDS[status] for status in NON_TERMINAL))
"""The ids of pending, queued, running, retrying (`domain.NON_TERMINAL`): 1, 2, 3, 4."""
SLOT_ID_CHECK = (
    "schedule_id IS NULL OR scheduled_for IS NULL OR substr(id::text, 15, 1) <> '7'"
    " OR id = scheduler_slot_id(schedule_id, scheduled_for)"
)
"""A UUIDv7 slot row carries its slot's id (`scheduler_slot_id`, migration 0009): two runs of
one slot would share an id, which the primary key refuses. Ids of other versions (Celery's
uuid4 task ids, rows written before 0009) are not checked."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExecutionStatusRow(Base):
    __tablename__ = "execution_statuses"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    is_terminal: Mapped[bool] = mapped_column(Boolean)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("num_nonnulls(cron, interval_seconds, run_at) = 1", name="one_kind"),
        CheckConstraint("interval_seconds > 0", name="interval_positive"),
        CheckConstraint("misfire_policy IN ('run_once', 'skip', 'run_all')", name="misfire_policy"),
        CheckConstraint("overlap_policy IN ('allow', 'skip', 'buffer_one')", name="overlap_policy"),
        CheckConstraint("misfire_grace_seconds >= 0", name="grace_non_negative"),
        CheckConstraint("jitter_seconds >= 0", name="jitter_non_negative"),
        CheckConstraint("max_runs > 0", name="max_runs_positive"),
        CheckConstraint("day_match IN ('any', 'all')", name="day_match"),
        CheckConstraint("pause_after_failures > 0", name="pause_after_failures_positive"),
        CheckConstraint("origin IN ('user', 'config')", name="origin"),
        *(
            CheckConstraint(
                f"{column} BETWEEN '{EARLIEST_INSTANT}' AND '{LATEST_INSTANT}'",
                name=f"{column}_representable",
            )
            for column in ("run_at", "start_at", "end_at", "next_run_at", "last_run_at")
        ),
        Index(
            "ix_schedules_due",
            "next_run_at",
            postgresql_where=text("enabled"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    task: Mapped[str] = mapped_column(Text)
    cron: Mapped[str | None] = mapped_column(Text)
    interval_seconds: Mapped[Decimal | None] = mapped_column(Numeric)
    run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timezone: Mapped[str] = mapped_column(Text, server_default=text("'UTC'"))
    args: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    kwargs: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    options: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    start_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    max_runs: Mapped[int | None] = mapped_column(Integer)
    misfire_policy: Mapped[str] = mapped_column(Text, server_default=text("'run_once'"))
    misfire_grace_seconds: Mapped[int | None] = mapped_column(Integer)
    overlap_policy: Mapped[str] = mapped_column(Text, server_default=text("'allow'"))
    jitter_seconds: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    description: Mapped[str | None] = mapped_column(Text)
    day_match: Mapped[str] = mapped_column(Text, server_default=text("'any'"))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    total_run_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_by: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pause_after_failures: Mapped[int | None] = mapped_column(Integer)
    monitored: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """Per-schedule Prometheus series (`scheduler.observability.metrics`)."""
    origin: Mapped[str] = mapped_column(Text, server_default=text("'user'"))
    """`user`, or `config`: synced from the app's `beat_schedule` at beat start."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Execution(Base):
    """One run. Partitioned by id range (scheduler.store.partitions): an id is a UUIDv7 whose time
    places the row; a slot's id is derived from (schedule_id, scheduled_for)
    (scheduler.core.execution_ids), so the primary key is also the slot's uniqueness."""

    __tablename__ = "executions"
    __table_args__ = (
        CheckConstraint(
            "trigger IN ('schedule', 'catchup', 'manual', 'direct', 'backfill', 'retry')",
            name="trigger",
        ),
        CheckConstraint(SLOT_ID_CHECK, name="slot_id"),
        # each index and the query it serves: docs/ARCHITECTURE.md, "executions"
        Index("ix_executions_root_id", "root_id", postgresql_where=text("root_id IS NOT NULL")),
        Index("ix_executions_schedule_created", "schedule_id", text("created_at DESC")),
        Index(
            "ix_executions_status_created",
            "status_id",
            text("created_at DESC"),
            postgresql_where=text("status_id <> 5"),
        ),
        Index("ix_executions_created", text("created_at DESC")),
        Index("ix_executions_task_created", "task", text("created_at DESC")),
        Index(
            "ix_executions_active",
            "status_id",
            "created_at",
            postgresql_where=text("status_id IN (1, 2, 3, 4)"),
        ),
        Index(
            "ix_executions_active_schedule",
            "schedule_id",
            postgresql_where=text("status_id IN (1, 2, 3, 4)"),
        ),
        {"postgresql_partition_by": "RANGE (id)"},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    schedule_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("schedules.id", ondelete="SET NULL")
    )
    task: Mapped[str] = mapped_column(Text)
    args: Mapped[Any] = mapped_column(JSONB, nullable=False)
    kwargs: Mapped[Any] = mapped_column(JSONB, nullable=False)
    trigger: Mapped[str] = mapped_column(Text)
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("execution_statuses.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    worker: Mapped[str | None] = mapped_column(Text)
    result_summary: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[Any | None] = mapped_column(JSONB)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    root_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


ALERT_EVENTS = ("failed", "timeout", "lost", "missed", "late", "stale", "recovered", "paused")


class NotificationRule(Base):
    """Which schedules (a glob, and its anchored regex) page where on which events."""

    __tablename__ = "notification_rules"
    __table_args__ = (
        CheckConstraint("num_nonnulls(webhook_url, task) = 1", name="one_target"),
        CheckConstraint(
            "events <@ ARRAY[{}]::text[]".format(", ".join(f"'{e}'" for e in ALERT_EVENTS)),
            name="known_events",
        ),
        CheckConstraint("late_after_s >= 1", name="late_after_positive"),
        CheckConstraint("stale_after_s >= 1", name="stale_after_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    schedules: Mapped[str] = mapped_column(Text, server_default=text("'*'"))
    schedules_regex: Mapped[str] = mapped_column(Text, server_default=text("'^.*$'"))
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(Text)
    late_after_s: Mapped[int | None] = mapped_column(Integer)
    stale_after_s: Mapped[int | None] = mapped_column(Integer)
    only_final_attempt: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class NotificationDelivery(Base):
    """One delivery per rule, event and run (`event_key`): never queued twice."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("rule_id", "event", "event_key"),
        CheckConstraint("status IN ('pending', 'sent')", name="status"),
        Index(
            "ix_notification_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    rule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("notification_rules.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(Text)
    event_key: Mapped[str] = mapped_column(Text)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    schedule_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[Any] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


_ROLES = "role IN ('viewer', 'operator', 'admin')"


class AuditEntry(Base):
    """Who changed what, when and why: web requests, CLI and Python API schedule changes."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", text("at DESC")),
        Index("ix_audit_log_target", "target_type", "target"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[Any] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))


class WebUser(Base):
    __tablename__ = "web_users"
    __table_args__ = (CheckConstraint(_ROLES, name="role"),)

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    role: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebToken(Base):
    __tablename__ = "web_tokens"
    __table_args__ = (CheckConstraint(_ROLES, name="role"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
