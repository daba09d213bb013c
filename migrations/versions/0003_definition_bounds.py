"""A schedule's args, kwargs and options within the bounds every reader can handle.

A JSON value nested a thousand levels deep is valid jsonb, but Python's parser gives up on
it: one such row, read in the beat's batch, failed every pass. Every entry point refuses
values nested deeper than 64 levels or larger than 1 MB; this trigger refuses them at the
database too, for raw SQL writes.

A trigger rather than a CHECK: it judges only values being written, so a row that already
holds one (written before this revision) can still be flagged by the beat, disabled,
renamed or removed; the beat and every read path show such a row as broken.

Revision ID: 0003
Revises: 0002_representable_times
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002_representable_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_DEPTH = 64
MAX_BYTES = 1_000_000


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION schedules_definition_bounds() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            label text;
            value jsonb;
        BEGIN
            FOREACH label IN ARRAY ARRAY['args', 'kwargs', 'options'] LOOP
                value := CASE label WHEN 'args' THEN NEW.args
                                    WHEN 'kwargs' THEN NEW.kwargs
                                    ELSE NEW.options END;
                IF value IS NULL THEN
                    CONTINUE;
                END IF;
                IF TG_OP = 'UPDATE' AND value IS NOT DISTINCT FROM (CASE label
                        WHEN 'args' THEN OLD.args
                        WHEN 'kwargs' THEN OLD.kwargs
                        ELSE OLD.options END) THEN
                    CONTINUE;
                END IF;
                IF octet_length(value::text) > {MAX_BYTES} THEN
                    RAISE EXCEPTION 'schedule %: % is larger than 1 MB', NEW.name, label
                        USING ERRCODE = 'check_violation';
                END IF;
                IF jsonb_path_exists(value, 'strict $.**{{{MAX_DEPTH + 1}}}') THEN
                    RAISE EXCEPTION 'schedule %: % is nested deeper than {MAX_DEPTH} levels',
                        NEW.name, label USING ERRCODE = 'check_violation';
                END IF;
            END LOOP;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER schedules_definition_bounds BEFORE INSERT OR UPDATE OF args, kwargs, "
        "options ON schedules FOR EACH ROW EXECUTE FUNCTION schedules_definition_bounds()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER schedules_definition_bounds ON schedules")
    op.execute("DROP FUNCTION schedules_definition_bounds()")
