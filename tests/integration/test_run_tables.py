"""The run path names a run's partition (scheduler.store.run_tables), and goes through the
parent whenever the partition is not known, is gone, or may not be written directly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from scheduler.core.execution_ids import new_execution_id, slot_execution_id
from scheduler.runtime import migrate
from scheduler.store.run_tables import PARENT, RunTables
from scheduler.store.runs import RunStore
from tests.support.sqlhelp import connected
from tests.support.status import QUEUED, SUCCESS

NOW = datetime.now(UTC)


async def _table_of(conn: asyncpg.Connection, run_id: uuid.UUID) -> str:
    return str(
        await conn.fetchval("SELECT tableoid::regclass::text FROM executions WHERE id = $1", run_id)
    )


async def _claim_and_finish(conn: asyncpg.Connection, run_id: uuid.UUID, tables: RunTables) -> None:
    attempt = await RunStore.claim_execution(
        conn, run_id, task="demo.noop", args_json="[]", kwargs_json="{}", worker="test",
        now=datetime.now(UTC), tables=tables,
    )  # fmt: skip
    assert attempt == 1
    await RunStore.record_progress(conn, run_id, '{"current": 1}', tables=tables)
    assert await RunStore.finish_run(
        conn, run_id, status_id=SUCCESS, duration_ms=1, completed_at=datetime.now(UTC),
        tables=tables,
    )  # fmt: skip
    row = await conn.fetchrow(
        "SELECT status_id, attempt, progress FROM executions WHERE id = $1", run_id
    )
    assert (row["status_id"], row["attempt"], row["progress"]) == (SUCCESS, 1, '{"current": 1}')


async def test_a_run_is_written_in_its_partition_and_other_ids_through_the_parent(
    database_url: str,
) -> None:
    async with connected(database_url) as conn:
        schedule = await conn.fetchval(
            "INSERT INTO schedules (name, task, interval_seconds) VALUES ('p', 'demo.noop', 60)"
            " RETURNING id"
        )
        slot_run = slot_execution_id(schedule, NOW)
        await conn.execute(
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
            " status_id) VALUES ($1, $2, 'demo.noop', '[]', '{}', 'schedule', $3, $4)",
            slot_run, schedule, NOW, QUEUED,
        )  # fmt: skip
        tables = RunTables()
        partition = await _table_of(conn, slot_run)
        assert partition.startswith("scheduler_partitions.executions_")
        assert await tables.relation(conn, slot_run) == partition
        await _claim_and_finish(conn, slot_run, tables)

        # an id in no partition's range (as most of Celery's uuid4 ids): the parent routes it
        direct = uuid.UUID("00000000-0000-4000-8000-" + uuid.uuid4().hex[:12])
        assert await tables.relation(conn, direct) == PARENT
        await _claim_and_finish(conn, direct, tables)
        assert await _table_of(conn, direct) == "scheduler_partitions.executions_default"


async def test_a_partition_dropped_after_the_list_was_read_falls_back_to_the_parent(
    database_url: str,
) -> None:
    async with connected(database_url) as conn:
        last = await conn.fetchval(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'executions'::regclass AND c.relname <> 'executions_default'"
            " ORDER BY c.relname DESC LIMIT 1"
        )
        bound = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1", last
        )
        low = uuid.UUID(bound.split("'")[1])
        run_id = uuid.UUID(int=low.int + 1)
        tables = RunTables()
        assert await tables.relation(conn, run_id) == f"scheduler_partitions.{last}"
        await conn.execute(f"DROP TABLE scheduler_partitions.{last}")  # empty: ahead of now
        await _claim_and_finish(conn, run_id, tables)
        assert await _table_of(conn, run_id) == "scheduler_partitions.executions_default"
        assert await tables.relation(conn, run_id) == PARENT


async def test_a_role_granted_only_the_parent_and_an_unpartitioned_table_use_the_parent(
    database_url: str, empty_database_url: str
) -> None:
    role = f"worker_{uuid.uuid4().hex[:10]}"
    async with connected(database_url) as conn:
        try:
            await conn.execute(f"CREATE ROLE {role}")
            await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON executions TO {role}")
            run_id = new_execution_id(NOW)
            tables = RunTables()
            assert (await tables.relation(conn, run_id)).startswith("scheduler_partitions.")
            await conn.execute(f"SET ROLE {role}")  # the list was read as the owner: 42501
            await _claim_and_finish(conn, run_id, tables)
            assert await tables.relation(conn, new_execution_id(NOW)) == PARENT
            await conn.execute("RESET ROLE")
            assert (await _table_of(conn, run_id)).startswith("scheduler_partitions.executions_")
        finally:
            await conn.execute("RESET ROLE")
            await conn.execute("DROP OWNED BY " + role)
            await conn.execute("DROP ROLE " + role)

    await migrate.upgrade(empty_database_url, "0008")
    async with connected(empty_database_url) as plain:
        run_id = new_execution_id(NOW + timedelta(seconds=1))
        tables = RunTables()
        assert await tables.relation(plain, run_id) == PARENT
        await _claim_and_finish(plain, run_id, tables)
