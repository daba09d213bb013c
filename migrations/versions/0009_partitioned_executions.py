"""`executions` partitioned by id range; a slot's run id derived from the slot.

The table becomes `PARTITION BY RANGE (id)`: an id is a UUIDv7 whose first 48 bits are a time
in milliseconds, so each partition (schema `scheduler_partitions`) holds one day or one week of
runs, and `executions_default` takes every other id (the rows written before this revision,
Celery's uuid4 ids of direct calls). A unique constraint on a partitioned table must hold the
partition key, so `UNIQUE (schedule_id, scheduled_for)` gives way: the run of a slot has the id
`scheduler_slot_id(schedule_id, scheduled_for)` (UUIDv7 of the slot time and an MD5 of the
pair, computed identically by scheduler.core.execution_ids), the check `ck_executions_slot_id`
refuses a UUIDv7 slot row with any other id, and the primary key refuses a second run of a slot.

Indexes: `uq_executions_slot` goes (the primary key does its work); `ix_executions_root_id`
covers only rows with a root; `ix_executions_status_created` leaves out `success` rows (their
history reads `ix_executions_created`). The rest serve the same queries as before
(docs/ARCHITECTURE.md lists each with its query).

Every row and id is kept: the table is rebuilt (renamed, recreated, copied, indexed) in this
one transaction, so writers wait for it. `scheduler db upgrade --online`
(scheduler.runtime.migrate_online) reaches this revision with beats and workers running: it
builds the table with the helpers below under another name (`executions_next`, `_next` names),
copies in batches and switches in seconds. Downgrade rebuilds the plain table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "scheduler_partitions"
AHEAD_DAYS = 7
DAILY_FROM_RUNS_PER_DAY = 100_000

COLUMNS = (
    "id, schedule_id, task, args, kwargs, trigger, scheduled_for, status_id, created_at,"
    " queued_at, started_at, completed_at, duration_ms, attempt, worker, result_summary,"
    " error_type, error_message, traceback, progress, parent_id, root_id"
)
TABLE = """
CREATE TABLE {table} (
    id uuid NOT NULL,
    schedule_id bigint,
    task text NOT NULL,
    args jsonb NOT NULL,
    kwargs jsonb NOT NULL,
    trigger text NOT NULL,
    scheduled_for timestamp with time zone,
    status_id smallint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    queued_at timestamp with time zone,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    duration_ms integer,
    attempt integer DEFAULT 0 NOT NULL,
    worker text,
    result_summary text,
    error_type text,
    error_message text,
    traceback text,
    progress jsonb,
    parent_id uuid,
    root_id uuid
)"""
RECENT_RUNS = "SELECT count(*) FROM executions WHERE created_at > now() - interval '1 hour'"
"""Runs of the last hour: daily partitions from DAILY_FROM_RUNS_PER_DAY a day, else weekly."""
GRANTS = (
    "SELECT grantee, string_agg(privilege_type, ', ') FROM"
    " information_schema.role_table_grants WHERE table_schema = 'public'"
    " AND table_name = 'executions' AND grantee <> (SELECT tableowner FROM pg_tables"
    " WHERE schemaname = 'public' AND tablename = 'executions') GROUP BY grantee"
)
"""The privileges others hold on `executions`: (grantee, privileges) rows."""
TRIGGER_CHECK = "trigger IN ('schedule', 'catchup', 'manual', 'direct', 'backfill', 'retry')"
SLOT_ID_CHECK = (
    "schedule_id IS NULL OR scheduled_for IS NULL OR substr(id::text, 15, 1) <> '7'"
    " OR id = scheduler_slot_id(schedule_id, scheduled_for)"
)
SLOT_ID_FUNCTION = """
CREATE OR REPLACE FUNCTION scheduler_slot_id(schedule_id bigint, slot timestamptz)
RETURNS uuid LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    us bigint := floor(extract(epoch FROM slot - to_timestamp(0)) * 1000000);
    h text := md5(schedule_id::text || ':' || us::text);
    ms bigint := ((floor(us / 1000.0)::bigint % 281474976710656) + 281474976710656)
                 % 281474976710656;
BEGIN
    RETURN (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3)
            || to_hex((('x' || substr(h, 4, 1))::bit(4)::int & 3) | 8)
            || substr(h, 5, 15))::uuid;
END
$$
"""
CHECKS = [("ck_executions_ck_executions_trigger", TRIGGER_CHECK)]
PARTITIONED_CHECKS = [("ck_executions_slot_id", SLOT_ID_CHECK)]
FOREIGN_KEYS = [
    (
        "fk_executions_schedule_id_schedules",
        "FOREIGN KEY (schedule_id) REFERENCES schedules (id) ON DELETE SET NULL",
    ),
    (
        "fk_executions_status_id_execution_statuses",
        "FOREIGN KEY (status_id) REFERENCES execution_statuses (id)",
    ),
]
COMMON_INDEXES = [
    ("ix_executions_schedule_created", "(schedule_id, created_at DESC)"),
    ("ix_executions_created", "(created_at DESC)"),
    ("ix_executions_task_created", "(task, created_at DESC)"),
    ("ix_executions_active", "(status_id, created_at) WHERE status_id IN (1, 2, 3, 4)"),
    ("ix_executions_active_schedule", "(schedule_id) WHERE status_id IN (1, 2, 3, 4)"),
]
PARTITIONED_INDEXES = [
    ("ix_executions_root_id", "(root_id) WHERE root_id IS NOT NULL"),
    ("ix_executions_status_created", "(status_id, created_at DESC) WHERE status_id <> 5"),
]
PLAIN_INDEXES = [
    ("ix_executions_root_id", "(root_id)"),
    ("ix_executions_status_created", "(status_id, created_at DESC)"),
]
MOVING = "current_setting('scheduler.moving', true) IS DISTINCT FROM 'on'"
"""Rows moved between partitions (`SET LOCAL scheduler.moving = 'on'`) are not new runs."""
ALERT_TRIGGERS = ["scheduler_alert_run_inserted", "scheduler_alert_run_updated"]
TRIGGERS = [
    """
CREATE TRIGGER scheduler_alert_run_inserted AFTER INSERT ON {table} FOR EACH ROW
WHEN (NEW.schedule_id IS NOT NULL AND (NEW.status_id = 10 OR NEW.queued_at IS NOT NULL){moving})
EXECUTE FUNCTION scheduler_alert_run_events()
""",
    """
CREATE TRIGGER scheduler_alert_run_updated AFTER UPDATE ON {table} FOR EACH ROW
WHEN (NEW.schedule_id IS NOT NULL AND (
    (NEW.status_id IS DISTINCT FROM OLD.status_id AND NEW.status_id IN (4, 5, 6, 7, 10, 11))
    OR (OLD.queued_at IS NULL AND NEW.queued_at IS NOT NULL
        AND NEW.queued_at > NEW.scheduled_for + interval '1 second')))
EXECUTE FUNCTION scheduler_alert_run_events()
""",
]


def _id_floor(instant: datetime) -> str:
    """The smallest UUIDv7 of `instant`'s millisecond (scheduler.core.execution_ids.id_floor)."""
    ms = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return str(uuid.UUID(int=ms << 80))


def _partitions(table: str, daily: bool) -> list[str]:
    """The partitions from today's period to AHEAD_DAYS ahead (scheduler.store.partitions names)."""
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    length = timedelta(days=1 if daily else 7)
    if not daily:
        start -= timedelta(days=start.weekday())
    statements = []
    while start <= now + timedelta(days=AHEAD_DAYS):
        name = f"executions_{'d' if daily else 'w'}{start:%Y%m%d}"
        statements.append(
            f"CREATE TABLE {SCHEMA}.{name} PARTITION OF {table}"
            f" FOR VALUES FROM ('{_id_floor(start)}') TO ('{_id_floor(start + length)}')"
        )
        start += length
    return statements


def daily_partitions(recent_runs: int) -> bool:
    """Whether `recent_runs` (the RECENT_RUNS count) call for daily partitions."""
    return recent_runs * 24 >= DAILY_FROM_RUNS_PER_DAY


def create_table(table: str, *, partitioned: bool, daily: bool) -> list[str]:
    """`executions`'s columns under the name `table`. Partitioned: by id range, with
    `executions_default` and the partitions of today to AHEAD_DAYS ahead, all in SCHEMA under
    their final names whatever `table` is (the plain table has none to collide with)."""
    if not partitioned:
        return [TABLE.format(table=table)]
    return [
        TABLE.format(table=table) + " PARTITION BY RANGE (id)",
        f"CREATE TABLE {SCHEMA}.executions_default PARTITION OF {table} DEFAULT",
        *_partitions(table, daily),
    ]


def keys(table: str, *, partitioned: bool, suffix: str = "") -> list[str]:
    """The primary key and the checks of `table` (the plain table's slot key too), each
    name ending in `suffix`. The foreign keys are apart: `foreign_keys`."""
    statements = [f"ALTER TABLE {table} ADD CONSTRAINT pk_executions{suffix} PRIMARY KEY (id)"]
    if not partitioned:
        statements.append(
            f"ALTER TABLE {table} ADD CONSTRAINT uq_executions_slot{suffix}"
            " UNIQUE (schedule_id, scheduled_for)"
        )
    checks = CHECKS + (PARTITIONED_CHECKS if partitioned else [])
    statements += [
        f"ALTER TABLE {table} ADD CONSTRAINT {name}{suffix} CHECK ({check})"
        for name, check in checks
    ]
    return statements


def foreign_keys(table: str, *, suffix: str = "", not_valid: bool = False) -> list[str]:
    """The foreign keys to schedules and statuses, named with `suffix`; `not_valid` leaves
    the rows already there unchecked (for `VALIDATE CONSTRAINT` later)."""
    tail = " NOT VALID" if not_valid else ""
    return [
        f"ALTER TABLE {table} ADD CONSTRAINT {name}{suffix} {definition}{tail}"
        for name, definition in FOREIGN_KEYS
    ]


def indexes(table: str, *, partitioned: bool, suffix: str = "") -> list[str]:
    """The indexes of `table` (docs/OPERATIONS.md says which query each serves)."""
    chosen = COMMON_INDEXES + (PARTITIONED_INDEXES if partitioned else PLAIN_INDEXES)
    return [f"CREATE INDEX {name}{suffix} ON {table} {columns}" for name, columns in chosen]


def alert_triggers(table: str, *, partitioned: bool) -> list[str]:
    """Revision 0008's run-event triggers; on the partitioned table quiet for moved rows."""
    moving = f" AND {MOVING}" if partitioned else ""
    return [trigger.format(table=table, moving=moving) for trigger in TRIGGERS]


def grant_statements(table: str, grants: Sequence[tuple[str, str]]) -> list[str]:
    """GRANTs giving `table` the (grantee, privileges) rows GRANTS read."""
    return [f'GRANT {privileges} ON {table} TO "{grantee}"' for grantee, privileges in grants]


def _rebuild(*, partitioned: bool) -> None:
    """Recreate `executions` (partitioned or plain) with every row, its grants and triggers."""
    bind = op.get_bind()
    grants = [(str(g), str(p)) for g, p in bind.execute(sa.text(GRANTS)).all()]
    recent = int(bind.execute(sa.text(RECENT_RUNS)).scalar_one())
    for name in ALERT_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON executions")
    op.execute("ALTER TABLE executions RENAME TO executions_previous")
    for statement in create_table(
        "executions", partitioned=partitioned, daily=daily_partitions(recent)
    ):
        op.execute(statement)
    op.execute(f"INSERT INTO executions ({COLUMNS}) SELECT {COLUMNS} FROM executions_previous")
    op.execute("DROP TABLE executions_previous")
    for statement in [
        *keys("executions", partitioned=partitioned),
        *foreign_keys("executions"),
        *indexes("executions", partitioned=partitioned),
        *alert_triggers("executions", partitioned=partitioned),
        *grant_statements("executions", grants),
    ]:
        op.execute(statement)
    op.execute("ANALYZE executions")


def upgrade() -> None:
    if op.get_bind().execute(sa.text("SELECT to_regclass('public.executions_next')")).scalar():
        raise RuntimeError(
            "an online move to 0009 is under way (executions_next exists): finish it with"
            " `scheduler db upgrade --online`, or abandon it (docs/OPERATIONS.md)"
        )
    op.execute(SLOT_ID_FUNCTION)
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    _rebuild(partitioned=True)


def downgrade() -> None:
    _rebuild(partitioned=False)
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS scheduler_slot_id(bigint, timestamptz)")
