"""Schedule instants within the years every reader can represent (1 to 9999, finite).

PostgreSQL accepts `infinity` and years up to 294276 in a timestamptz; Python's datetime
holds years 1 to 9999. One such value in a due row failed the beat's read of the whole batch,
stopping every schedule, and `schedules list` with it. These constraints refuse such values
at the door (a day of margin at each end leaves room for time zone conversion).

Rows already holding one are kept, made to fit and flagged: a user-set instant (`run_at`,
`start_at`, `end_at`) is clamped to the bound, the row disabled and `last_error` says what it
held; the beat's own bookkeeping (`next_run_at`, `last_run_at`) is cleared and recomputed.

Revision ID: 0002_representable_times
Revises: 0001_initial
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_representable_times"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOW = "0001-01-02 00:00:00+00"
HIGH = "9999-12-30 00:00:00+00"
USER_SET = ("run_at", "start_at", "end_at")
BEAT_SET = ("next_run_at", "last_run_at")


def _outside(column: str) -> str:
    return f"{column} IS NOT NULL AND NOT ({column} BETWEEN '{LOW}' AND '{HIGH}')"


def upgrade() -> None:
    for column in USER_SET:
        op.execute(
            f"UPDATE schedules SET enabled = false, "
            f"last_error = 'disabled by migration 0002: {column} was ' || {column}::text || "
            f"', outside the years 1 to 9999; set it again', "
            f"{column} = least(greatest({column}, '{LOW}'), '{HIGH}') "
            f"WHERE {_outside(column)}"
        )
    # the beat's own fields: cleared as the beat would, so no flag set above is taken for
    # fixed (an edit by anyone else clears `last_error`)
    op.execute("SELECT set_config('scheduler.origin', 'beat', true)")
    for column in BEAT_SET:
        op.execute(f"UPDATE schedules SET {column} = NULL WHERE {_outside(column)}")
    for column in USER_SET + BEAT_SET:
        op.create_check_constraint(
            f"{column}_representable", "schedules", f"{column} BETWEEN '{LOW}' AND '{HIGH}'"
        )


def downgrade() -> None:
    for column in USER_SET + BEAT_SET:
        op.drop_constraint(op.f(f"ck_schedules_{column}_representable"), "schedules", type_="check")
