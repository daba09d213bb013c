"""SQLAlchemy tables: the public schema of DESIGN.md. The migrations create exactly these."""

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
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scheduler.domain import EARLIEST_INSTANT, LATEST_INSTANT

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NOTIFY_CHANNEL = "scheduler_schedules"
NON_TERMINAL_STATUS_IDS = (1, 2, 3, 4)
"""pending, queued, running, retrying (see `domain.ExecutionStatus`)."""


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
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    total_run_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(Text, server_default=text("'user'"))
    """`user`, or `config`: synced from the app's `beat_schedule` at beat start."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for", name="uq_executions_slot"),
        CheckConstraint("trigger IN ('schedule', 'catchup', 'manual', 'direct')", name="trigger"),
        Index("ix_executions_schedule_created", "schedule_id", text("created_at DESC")),
        Index("ix_executions_status_created", "status_id", text("created_at DESC")),
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
