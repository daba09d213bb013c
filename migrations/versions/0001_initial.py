"""Initial schema: execution_statuses (seeded), schedules, executions, NOTIFY trigger.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = [
    (1, "pending", "Pending (written, not yet confirmed on the broker)", False),
    (2, "queued", "Queued", False),
    (3, "running", "Running", False),
    (4, "retrying", "Retrying", False),
    (5, "success", "Succeeded", True),
    (6, "failed", "Failed", True),
    (7, "timeout", "Timed out", True),
    (8, "revoked", "Revoked", True),
    (9, "skipped", "Skipped (overlap policy)", True),
    (10, "missed", "Missed (misfire policy)", True),
    (11, "lost", "Lost (worker died or never finished)", True),
]

# Changes made by a beat run with `SET LOCAL scheduler.origin = 'beat'`: they neither wake
# the beats nor count as edits. Any other edit of a row's timing (or of a row the beat
# flagged with last_error) clears next_run_at, so the beat computes it afresh.
STATEMENTS = [
    """
CREATE FUNCTION scheduler_schedules_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('scheduler.origin', true), '') <> 'beat' THEN
        PERFORM pg_notify('scheduler_schedules', TG_OP);
    END IF;
    RETURN NULL;
END
$$
""",
    """
CREATE FUNCTION scheduler_schedules_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('scheduler.origin', true), '') = 'beat' THEN
        RETURN NEW;
    END IF;
    NEW.updated_at := now();
    IF NEW.next_run_at IS NOT DISTINCT FROM OLD.next_run_at AND (
           NEW.cron IS DISTINCT FROM OLD.cron
        OR NEW.interval_seconds IS DISTINCT FROM OLD.interval_seconds
        OR NEW.run_at IS DISTINCT FROM OLD.run_at
        OR NEW.timezone IS DISTINCT FROM OLD.timezone
        OR NEW.start_at IS DISTINCT FROM OLD.start_at
        OR (NEW.enabled AND NOT OLD.enabled)
        OR OLD.last_error IS NOT NULL
    ) THEN
        NEW.next_run_at := NULL;
    END IF;
    IF OLD.last_error IS NOT NULL AND NEW.last_error IS NOT DISTINCT FROM OLD.last_error THEN
        NEW.last_error := NULL;
    END IF;
    RETURN NEW;
END
$$
""",
    """
CREATE TRIGGER schedules_notify
    AFTER INSERT OR UPDATE OR DELETE ON schedules
    FOR EACH STATEMENT EXECUTE FUNCTION scheduler_schedules_notify()
""",
    """
CREATE TRIGGER schedules_before_update
    BEFORE UPDATE ON schedules
    FOR EACH ROW EXECUTE FUNCTION scheduler_schedules_before_update()
""",
]

NON_TERMINAL = sa.text("status_id IN (1, 2, 3, 4)")


def upgrade() -> None:
    statuses = op.create_table(
        "execution_statuses",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("is_terminal", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_execution_statuses"),
        sa.UniqueConstraint("code", name="uq_execution_statuses_code"),
    )
    op.bulk_insert(
        statuses,
        [{"id": i, "code": c, "name": n, "is_terminal": t} for i, c, n, t in STATUSES],
    )

    op.create_table(
        "schedules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("interval_seconds", sa.Numeric(), nullable=True),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column(
            "args", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column(
            "kwargs", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column(
            "options", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_runs", sa.Integer(), nullable=True),
        sa.Column(
            "misfire_policy", sa.Text(), server_default=sa.text("'run_once'"), nullable=False
        ),
        sa.Column("misfire_grace_seconds", sa.Integer(), nullable=True),
        sa.Column("overlap_policy", sa.Text(), server_default=sa.text("'allow'"), nullable=False),
        sa.Column("jitter_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_run_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "num_nonnulls(cron, interval_seconds, run_at) = 1", name="ck_schedules_one_kind"
        ),
        sa.CheckConstraint("interval_seconds > 0", name="ck_schedules_interval_positive"),
        sa.CheckConstraint(
            "misfire_policy IN ('run_once', 'skip', 'run_all')", name="ck_schedules_misfire_policy"
        ),
        sa.CheckConstraint(
            "overlap_policy IN ('allow', 'skip', 'buffer_one')", name="ck_schedules_overlap_policy"
        ),
        sa.CheckConstraint("misfire_grace_seconds >= 0", name="ck_schedules_grace_non_negative"),
        sa.CheckConstraint("jitter_seconds >= 0", name="ck_schedules_jitter_non_negative"),
        sa.CheckConstraint("max_runs > 0", name="ck_schedules_max_runs_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
    )
    op.create_index(
        "ix_schedules_due", "schedules", ["next_run_at"], postgresql_where=sa.text("enabled")
    )

    op.create_table(
        "executions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=True),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("args", postgresql.JSONB(), nullable=False),
        sa.Column("kwargs", postgresql.JSONB(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_id", sa.SmallInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("result_summary", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("progress", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint(
            "trigger IN ('schedule', 'catchup', 'manual', 'direct')", name="ck_executions_trigger"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_executions_schedule_id_schedules",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["status_id"],
            ["execution_statuses.id"],
            name="fk_executions_status_id_execution_statuses",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_executions"),
        sa.UniqueConstraint("schedule_id", "scheduled_for", name="uq_executions_slot"),
    )
    op.create_index(
        "ix_executions_schedule_created",
        "executions",
        ["schedule_id", sa.text("created_at DESC")],
    )
    op.create_index(
        "ix_executions_status_created", "executions", ["status_id", sa.text("created_at DESC")]
    )
    op.create_index("ix_executions_created", "executions", [sa.text("created_at DESC")])
    op.create_index(
        "ix_executions_task_created", "executions", ["task", sa.text("created_at DESC")]
    )
    op.create_index(
        "ix_executions_active",
        "executions",
        ["status_id", "created_at"],
        postgresql_where=NON_TERMINAL,
    )
    op.create_index(
        "ix_executions_active_schedule",
        "executions",
        ["schedule_id"],
        postgresql_where=NON_TERMINAL,
    )
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("executions")
    op.drop_table("schedules")
    op.drop_table("execution_statuses")
    op.execute("DROP FUNCTION IF EXISTS scheduler_schedules_before_update()")
    op.execute("DROP FUNCTION IF EXISTS scheduler_schedules_notify()")
