"""`schedules.origin`: who owns a row, a user (`user`) or the app's `beat_schedule` (`config`).

At beat start the entries of `app.conf.beat_schedule` are synced into `schedules` as rows
with origin `config`; rows with origin `user` (made by the CLI, the API, YAML or SQL) are never
touched by that sync. Existing rows are users'.

Revision ID: 0004
Revises: 0002_representable_times
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "schedules",
        sa.Column("origin", sa.Text(), server_default=sa.text("'user'"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_schedules_origin"), "schedules", "origin IN ('user', 'config')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_schedules_origin"), "schedules", type_="check")
    op.drop_column("schedules", "origin")
