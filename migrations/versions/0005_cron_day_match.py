"""How a cron schedule combines day of month and day of week: `schedules.day_match`.

`any` (the default) is POSIX/Vixie cron: when both fields are restricted, a day matching
either fires. `all` requires both, as Celery's crontab does; the importers set it so entries
keep their meaning. A change of `day_match` is a change of timing: the row's `next_run_at` is
cleared for the beat to compute again, as for a change of `cron`.

Revision ID: 0005
Revises: 0002_representable_times
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION scheduler_schedules_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
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
        {extra}
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
"""


def upgrade() -> None:
    op.add_column(
        "schedules",
        sa.Column("day_match", sa.Text(), server_default=sa.text("'any'"), nullable=False),
    )
    op.create_check_constraint("day_match", "schedules", "day_match IN ('any', 'all')")
    op.execute(_FUNCTION.format(extra="OR NEW.day_match IS DISTINCT FROM OLD.day_match"))


def downgrade() -> None:
    op.execute(_FUNCTION.format(extra=""))
    op.drop_constraint(op.f("ck_schedules_day_match"), "schedules", type_="check")
    op.drop_column("schedules", "day_match")
