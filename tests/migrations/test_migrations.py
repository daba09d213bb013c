"""The migrations create exactly the models, go down and up again, and seed the statuses."""

from __future__ import annotations

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from scheduler.core.domain import NON_TERMINAL, ExecutionStatus
from scheduler.runtime import migrate
from scheduler.store.models import Base
from tests.support.sqlhelp import plain_dsn

CONTRACT_TABLES = {
    "execution_statuses",
    "schedules",
    "executions",
    "notification_rules",
    "notification_deliveries",
    "audit_log",
    "web_users",
    "web_tokens",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    await migrate.upgrade(url)
    assert await _tables(url) == CONTRACT_TABLES
    assert await migrate.current(url) == migrate.head_revision()
    await migrate.downgrade(url, "base")
    assert await _tables(url) == set()
    assert await migrate.current(url) is None
    await migrate.upgrade(url)
    assert await _tables(url) == CONTRACT_TABLES


async def test_models_equal_migrations(database_url: str) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


async def test_status_codes_are_seeded_with_fixed_ids(database_url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT id, code, is_terminal FROM execution_statuses")
    finally:
        await conn.close()
    seeded = {r["code"]: (r["id"], r["is_terminal"]) for r in rows}
    assert seeded == {s.value: (s.id, s not in NON_TERMINAL) for s in ExecutionStatus}


async def test_notify_trigger_fires_on_raw_insert(database_url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(database_url))
    received: list[str] = []
    try:
        await conn.add_listener("scheduler_schedules", lambda *a: received.append(a[3]))
        other = await asyncpg.connect(plain_dsn(database_url))
        try:
            await other.execute(
                "INSERT INTO schedules (name, task, cron) VALUES ('raw', 'demo.noop', '* * * * *')"
            )
            await other.execute("UPDATE schedules SET enabled = false WHERE name = 'raw'")
        finally:
            await other.close()
        for _ in range(50):
            if len(received) >= 2:
                break
            await conn.execute("SELECT 1")
    finally:
        await conn.close()
    assert received == ["INSERT", "UPDATE"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("cron", "'*/5 * * * *'"),
        ("timezone", "'Europe/London'"),
        ("enabled", "true"),
    ],
)
async def test_timing_edits_clear_next_run_at(database_url: str, column: str, value: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO schedules (name, task, cron, enabled, next_run_at) "
                    "VALUES ('s', 'demo.noop', '* * * * *', false, now())"
                )
            )
            await conn.execute(text(f"UPDATE schedules SET {column} = {value}"))
            after = (await conn.execute(text("SELECT next_run_at FROM schedules"))).scalar()
            assert after is None
            # the beat's own bookkeeping keeps its value and does not count as an edit
            await conn.execute(text("SELECT set_config('scheduler.origin', 'beat', true)"))
            await conn.execute(text("UPDATE schedules SET next_run_at = now(), cron = '0 * * * *'"))
            kept = (await conn.execute(text("SELECT next_run_at FROM schedules"))).scalar()
            assert kept is not None
    finally:
        await engine.dispose()


async def test_constraints_reject_two_kinds(database_url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO schedules (name, task, cron, interval_seconds) "
                "VALUES ('x', 'demo.noop', '* * * * *', 5)"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO schedules (name, task) VALUES ('y', 'demo.noop')")
    finally:
        await conn.close()


@pytest.mark.parametrize("column", ["run_at", "start_at", "end_at", "next_run_at", "last_run_at"])
@pytest.mark.parametrize("value", ["infinity", "-infinity", "10000-01-01 00:00+00"])
async def test_instants_python_cannot_hold_are_refused(
    database_url: str, column: str, value: str
) -> None:
    kind = "" if column == "run_at" else "interval_seconds, "
    every = "" if column == "run_at" else "60, "
    insert = f"INSERT INTO schedules (name, task, {kind}{column}) VALUES ($1, 'demo.noop', {every}"
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        with pytest.raises(asyncpg.CheckViolationError, match=f"{column}_representable"):
            await conn.execute(insert + f"'{value}'::timestamptz)", "x")
        # the bounds themselves (a day inside years 1 and 9999) are fine
        await conn.execute(insert + "'9999-12-29 23:00+00')", "edge")
    finally:
        await conn.close()


async def test_upgrade_flags_and_clamps_instants_written_before_the_constraints(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await migrate.upgrade(url, "0001_initial")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO schedules (name, task, run_at) VALUES ('forever', 'demo.noop', 'infinity')"
        )
        await conn.execute(
            "INSERT INTO schedules (name, task, interval_seconds, start_at, next_run_at, "
            "last_run_at) VALUES ('ancient', 'demo.noop', 60, '-infinity', '-infinity', "
            "'20000-01-01'), ('fine', 'demo.noop', 60, '2026-01-01', '2026-06-01', NULL)"
        )
        await migrate.upgrade(url)
        rows = {
            r["name"]: dict(r)
            for r in await conn.fetch(
                "SELECT name, enabled, run_at::text, start_at::text, next_run_at::text, "
                "last_run_at::text, last_error FROM schedules"
            )
        }
    finally:
        await conn.close()
    assert rows["forever"]["run_at"] == "9999-12-30 00:00:00+00"
    assert rows["forever"]["enabled"] is False
    assert "run_at was infinity" in rows["forever"]["last_error"]
    assert rows["ancient"]["start_at"] == "0001-01-02 00:00:00+00"
    assert rows["ancient"]["enabled"] is False
    assert "start_at was -infinity" in rows["ancient"]["last_error"]
    assert rows["ancient"]["next_run_at"] is None
    assert rows["ancient"]["last_run_at"] is None
    assert rows["fine"] == {
        "name": "fine",
        "enabled": True,
        "run_at": None,
        "start_at": "2026-01-01 00:00:00+00",
        "next_run_at": "2026-06-01 00:00:00+00",
        "last_run_at": None,
        "last_error": None,
    }
