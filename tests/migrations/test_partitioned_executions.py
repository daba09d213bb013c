"""Revision 0009: `executions` partitioned by id range, every row and id kept both ways."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from scheduler.core.execution_ids import slot_execution_id
from scheduler.runtime import migrate
from tests.support.sqlhelp import plain_dsn
from tests.support.status import PENDING

ROWS = 20_000
FINGERPRINT = (
    "SELECT count(*) AS n, md5(string_agg(id::text || coalesce(schedule_id::text, '-')"
    " || coalesce(scheduled_for::text, '-') || status_id || created_at || kwargs::text"
    " || coalesce(root_id::text, '-'), ',' ORDER BY id)) AS digest FROM executions"
)


async def _seed(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO schedules (name, task, interval_seconds)"
        " SELECT 'every-' || i, 'demo.noop', 60 FROM generate_series(1, 50) i"
    )
    await conn.execute(
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
        " status_id, created_at, root_id)"
        " SELECT gen_random_uuid(), 1 + g % 50, 'demo.noop', '[]', jsonb_build_object('n', g),"
        " 'schedule', now() - g * interval '1 minute', 1 + g % 11,"
        " now() - g * interval '1 minute', CASE WHEN g % 7 = 0 THEN gen_random_uuid() END"
        " FROM generate_series(1, $1) g",
        ROWS,
    )


async def test_upgrade_keeps_every_row_and_id_and_downgrade_too(empty_database_url: str) -> None:
    url = empty_database_url
    role = f"reader_{uuid.uuid4().hex[:10]}"
    await migrate.upgrade(url, "0008")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await _seed(conn)
        before = await conn.fetchrow(FINGERPRINT)
        await conn.execute(f"CREATE ROLE {role}")
        await conn.execute(f"GRANT SELECT ON executions TO {role}")
    finally:
        await conn.close()
    try:
        await migrate.upgrade(url, "0009")
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            assert await conn.fetchrow(FINGERPRINT) == before
            assert (
                await conn.fetchval(
                    "SELECT relkind::text FROM pg_class WHERE relname = 'executions'"
                )
                == "p"
            )
            # the old rows (uuid4 ids) sit in the default partition; lookups still work
            some = await conn.fetchval("SELECT id FROM executions ORDER BY id LIMIT 1")
            assert await conn.fetchval("SELECT count(*) FROM executions WHERE id = $1", some) == 1
            assert await conn.fetchval(
                "SELECT has_table_privilege($1, 'executions', 'SELECT')", role
            )
            # a new slot row goes to its time partition; a second run of the slot is refused
            slot = datetime.now(UTC).replace(microsecond=0)
            run_id = slot_execution_id(1, slot)
            insert = (
                "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger,"
                " scheduled_for, status_id) VALUES ($1, 1, 'demo.noop', '[]', '{}', 'schedule',"
                f" $2, {PENDING}) ON CONFLICT (id) DO NOTHING RETURNING tableoid::regclass::text"
            )
            where = await conn.fetchval(insert, run_id, slot)
            assert where.startswith("scheduler_partitions.executions_")
            assert where != "scheduler_partitions.executions_default"
            assert await conn.fetchval(insert, run_id, slot) is None
        finally:
            await conn.close()
        await migrate.downgrade(url, "0008")
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            after = await conn.fetchrow(FINGERPRINT)
            assert after["n"] == ROWS + 1
            await conn.execute("DELETE FROM executions WHERE id = $1", run_id)
            assert await conn.fetchrow(FINGERPRINT) == before
            assert (
                await conn.fetchval(
                    "SELECT relkind::text FROM pg_class WHERE relname = 'executions'"
                )
                == "r"
            )
            with pytest.raises(asyncpg.UniqueViolationError, match="uq_executions_slot"):
                await conn.execute(
                    "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger,"
                    " scheduled_for, status_id) SELECT $1, schedule_id, task, args, kwargs,"
                    " trigger, scheduled_for, status_id FROM executions"
                    " WHERE scheduled_for IS NOT NULL LIMIT 1",
                    uuid.uuid4(),
                )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = 'scheduler_partitions'"
                )
                == 0
            )
        finally:
            await conn.close()
    finally:
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE {role}")
        finally:
            await conn.close()


async def test_a_slot_row_must_carry_its_slot_id(database_url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO schedules (name, task, interval_seconds) VALUES ('s', 'demo.noop', 60)"
        )
        slot = datetime(2026, 12, 2, 10, 0, 0, 250_000, tzinfo=UTC)
        assert await conn.fetchval("SELECT scheduler_slot_id(1, $1)", slot) == slot_execution_id(
            1, slot
        )
        wrong = slot_execution_id(1, slot.replace(second=1))
        with pytest.raises(asyncpg.CheckViolationError, match="ck_executions_slot_id"):
            await conn.execute(
                "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger,"
                " scheduled_for, status_id) VALUES ($1, 1, 'demo.noop', '[]', '{}', 'schedule',"
                f" $2, {PENDING})",
                wrong,
                slot,
            )
    finally:
        await conn.close()
