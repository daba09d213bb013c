"""Pause with a reason, auto-pause after failures, backfill and retry runs, run trees.

- `schedules.paused_reason`, `paused_by`, `paused_at` annotate `enabled = false`; an enabled
  row never carries them (a trigger clears them whenever a row is enabled, however it is;
  its WHEN clause keeps the beat's own updates of enabled rows free of it).
- `schedules.pause_after_failures` (> 0): that many consecutive terminal failures pause it.
- `executions.parent_id`, `root_id`: Celery's parent and root task ids (indexed by root).
- trigger codes `backfill` and `retry`.

Revision ID: 0006
Revises: 0002_representable_times
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.elements import conv

revision: str = "0006"
down_revision: str | None = "0002_representable_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER_CHECK = conv("ck_executions_ck_executions_trigger")
"""The name 0001 gave it (its naming convention applied twice): kept, so later revisions find it."""
OLD_TRIGGERS = "trigger IN ('schedule', 'catchup', 'manual', 'direct')"
NEW_TRIGGERS = "trigger IN ('schedule', 'catchup', 'manual', 'direct', 'backfill', 'retry')"

CLEAR_PAUSE = """
CREATE FUNCTION scheduler_schedules_clear_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.enabled THEN
        NEW.paused_reason := NULL;
        NEW.paused_by := NULL;
        NEW.paused_at := NULL;
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.add_column("schedules", sa.Column("paused_reason", sa.Text(), nullable=True))
    op.add_column("schedules", sa.Column("paused_by", sa.Text(), nullable=True))
    op.add_column("schedules", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("schedules", sa.Column("pause_after_failures", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "pause_after_failures_positive", "schedules", "pause_after_failures > 0"
    )
    op.add_column("executions", sa.Column("parent_id", sa.UUID(), nullable=True))
    op.add_column("executions", sa.Column("root_id", sa.UUID(), nullable=True))
    op.create_index("ix_executions_root_id", "executions", ["root_id"])
    op.drop_constraint(TRIGGER_CHECK, "executions", type_="check")
    op.create_check_constraint(TRIGGER_CHECK, "executions", NEW_TRIGGERS)
    op.execute(CLEAR_PAUSE)
    op.execute(
        "CREATE TRIGGER schedules_clear_pause BEFORE INSERT OR UPDATE ON schedules "
        "FOR EACH ROW WHEN (NEW.enabled AND num_nonnulls(NEW.paused_reason, NEW.paused_by, "
        "NEW.paused_at) > 0) EXECUTE FUNCTION scheduler_schedules_clear_pause()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS schedules_clear_pause ON schedules")
    op.execute("DROP FUNCTION IF EXISTS scheduler_schedules_clear_pause()")
    op.execute("DELETE FROM executions WHERE trigger IN ('backfill', 'retry')")
    op.drop_constraint(TRIGGER_CHECK, "executions", type_="check")
    op.create_check_constraint(TRIGGER_CHECK, "executions", OLD_TRIGGERS)
    op.drop_index("ix_executions_root_id", table_name="executions")
    op.drop_column("executions", "root_id")
    op.drop_column("executions", "parent_id")
    op.drop_constraint(
        op.f("ck_schedules_pause_after_failures_positive"), "schedules", type_="check"
    )
    op.drop_column("schedules", "pause_after_failures")
    op.drop_column("schedules", "paused_at")
    op.drop_column("schedules", "paused_by")
    op.drop_column("schedules", "paused_reason")
