"""Alerts and monitored schedules.

`schedules.monitored` gives a schedule its own Prometheus series. `notification_rules` say
which schedules (a glob, kept with its anchored regular expression) page where (a webhook or
a registered task) on which events; `notification_deliveries` hold one row per rule, event
and run (UNIQUE (rule_id, event, event_key)), so an event is never queued twice, whatever
the number of beats and workers.

Run events (failed, timeout, lost, missed, late, recovered) are written by triggers on
`executions`, in the very transaction that records the run's new state, whichever process
writes it; `paused` by a trigger on `schedules` (enabled turned false by anyone but the beat
itself). Their WHEN clauses keep the hot path untouched: a run being queued on time or
started fires nothing; a success only looks up the rules when some exist. `stale` has no
write to hang on: the beat looks for it.

Revision ID: 0008
Revises: 0002_representable_times
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = ("failed", "timeout", "lost", "missed", "late", "stale", "recovered", "paused")

# status ids (domain.ExecutionStatus): retrying 4, success 5, failed 6, timeout 7, missed 10, lost 11
RUN_EVENTS_FUNCTION = """
CREATE FUNCTION scheduler_alert_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    schedule_name text;
    status_code text;
    found text[] := '{}';
    is_final boolean := true;
    previous smallint;
    newly_queued boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notification_rules WHERE enabled) THEN
        RETURN NULL;
    END IF;
    SELECT name INTO schedule_name FROM schedules WHERE id = NEW.schedule_id;
    IF schedule_name IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR OLD.status_id IS DISTINCT FROM NEW.status_id THEN
        CASE NEW.status_id
            WHEN 4 THEN found := found || 'failed'::text; is_final := false;
            WHEN 6 THEN found := found || 'failed'::text;
            WHEN 7 THEN found := found || 'timeout'::text;
            WHEN 10 THEN found := found || 'missed'::text;
            WHEN 11 THEN found := found || 'lost'::text;
            WHEN 5 THEN
                IF EXISTS (SELECT 1 FROM notification_rules r WHERE r.enabled
                           AND 'recovered' = ANY (r.events) AND schedule_name ~ r.schedules_regex)
                THEN
                    SELECT e.status_id INTO previous FROM executions e
                    WHERE e.schedule_id = NEW.schedule_id AND e.id <> NEW.id
                      AND e.status_id IN (5, 6, 7, 11)
                    ORDER BY e.created_at DESC LIMIT 1;
                    IF previous IN (6, 7, 11) THEN
                        found := found || 'recovered'::text;
                    END IF;
                END IF;
            ELSE NULL;
        END CASE;
    END IF;
    IF TG_OP = 'INSERT' THEN
        newly_queued := NEW.queued_at IS NOT NULL;
    ELSE
        newly_queued := OLD.queued_at IS NULL AND NEW.queued_at IS NOT NULL;
    END IF;
    IF newly_queued AND NEW.scheduled_for IS NOT NULL THEN
        found := found || 'late'::text;
    END IF;
    IF cardinality(found) = 0 THEN
        RETURN NULL;
    END IF;
    SELECT code INTO status_code FROM execution_statuses WHERE id = NEW.status_id;
    INSERT INTO notification_deliveries
        (rule_id, event, event_key, execution_id, schedule_id, payload)
    SELECT r.id, ev,
           CASE WHEN NOT is_final AND ev = 'failed' THEN NEW.id::text || ':' || NEW.attempt
                ELSE NEW.id::text END,
           NEW.id, NEW.schedule_id,
           jsonb_build_object(
               'event', ev, 'rule', r.name, 'schedule', schedule_name,
               'execution_id', NEW.id::text, 'status', status_code,
               'scheduled_for', NEW.scheduled_for, 'error_message', NEW.error_message)
    FROM notification_rules r CROSS JOIN unnest(found) AS ev
    WHERE r.enabled AND ev = ANY (r.events) AND schedule_name ~ r.schedules_regex
      AND (is_final OR NOT r.only_final_attempt)
      AND (ev <> 'late' OR (r.late_after_s IS NOT NULL
           AND NEW.queued_at - NEW.scheduled_for > make_interval(secs => r.late_after_s)))
    ON CONFLICT (rule_id, event, event_key) DO NOTHING;
    RETURN NULL;
END
$$
"""

PAUSED_FUNCTION = """
CREATE FUNCTION scheduler_alert_paused() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('scheduler.origin', true), '') = 'beat' THEN
        RETURN NULL;  -- the beat ends finished schedules (max_runs, end_at, one-offs)
    END IF;
    INSERT INTO notification_deliveries (rule_id, event, event_key, schedule_id, payload)
    SELECT r.id, 'paused', NEW.id::text || ':' || now()::text, NEW.id,
           jsonb_build_object(
               'event', 'paused', 'rule', r.name, 'schedule', NEW.name,
               'execution_id', NULL, 'status', 'paused', 'scheduled_for', NULL,
               'error_message', NULL)
    FROM notification_rules r
    WHERE r.enabled AND 'paused' = ANY (r.events) AND NEW.name ~ r.schedules_regex
    ON CONFLICT (rule_id, event, event_key) DO NOTHING;
    RETURN NULL;
END
$$
"""

TRIGGERS = [
    """
CREATE TRIGGER scheduler_alert_run_inserted AFTER INSERT ON executions FOR EACH ROW
WHEN (NEW.schedule_id IS NOT NULL AND (NEW.status_id = 10 OR NEW.queued_at IS NOT NULL))
EXECUTE FUNCTION scheduler_alert_run_events()
""",
    """
CREATE TRIGGER scheduler_alert_run_updated AFTER UPDATE ON executions FOR EACH ROW
WHEN (NEW.schedule_id IS NOT NULL AND (
    (NEW.status_id IS DISTINCT FROM OLD.status_id AND NEW.status_id IN (4, 5, 6, 7, 10, 11))
    OR (OLD.queued_at IS NULL AND NEW.queued_at IS NOT NULL
        AND NEW.queued_at > NEW.scheduled_for + interval '1 second')))
EXECUTE FUNCTION scheduler_alert_run_events()
""",
    """
CREATE TRIGGER scheduler_alert_paused AFTER UPDATE OF enabled ON schedules FOR EACH ROW
WHEN (OLD.enabled AND NOT NEW.enabled)
EXECUTE FUNCTION scheduler_alert_paused()
""",
]


def upgrade() -> None:
    op.add_column(
        "schedules",
        sa.Column("monitored", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    events = ", ".join(f"'{e}'" for e in EVENTS)
    op.create_table(
        "notification_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("schedules", sa.Text(), server_default=sa.text("'*'"), nullable=False),
        sa.Column("schedules_regex", sa.Text(), server_default=sa.text("'^.*$'"), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("task", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("late_after_s", sa.Integer(), nullable=True),
        sa.Column("stale_after_s", sa.Integer(), nullable=True),
        sa.Column(
            "only_final_attempt", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("num_nonnulls(webhook_url, task) = 1", name="one_target"),
        sa.CheckConstraint(f"events <@ ARRAY[{events}]::text[]", name="known_events"),
        sa.CheckConstraint("late_after_s >= 1", name="late_after_positive"),
        sa.CheckConstraint("stale_after_s >= 1", name="stale_after_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_rules"),
        sa.UniqueConstraint("name", name="uq_notification_rules_name"),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column(
            "id",
            sa.UUID(),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("rule_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("event_key", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.UUID(), nullable=True),
        sa.Column("schedule_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent')", name="status"),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["notification_rules.id"],
            name="fk_notification_deliveries_rule_id_notification_rules",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notification_deliveries"),
        sa.UniqueConstraint(
            "rule_id",
            "event",
            "event_key",
            name="uq_notification_deliveries_rule_id_event_event_key",
        ),
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    for statement in (RUN_EVENTS_FUNCTION, PAUSED_FUNCTION, *TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS scheduler_alert_paused ON schedules")
    op.execute("DROP TRIGGER IF EXISTS scheduler_alert_run_updated ON executions")
    op.execute("DROP TRIGGER IF EXISTS scheduler_alert_run_inserted ON executions")
    op.execute("DROP FUNCTION IF EXISTS scheduler_alert_paused()")
    op.execute("DROP FUNCTION IF EXISTS scheduler_alert_run_events()")
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_rules")
    op.drop_column("schedules", "monitored")
