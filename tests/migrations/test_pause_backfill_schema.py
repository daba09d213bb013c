"""Revision 0006: pause annotation, pause_after_failures, run links, new trigger codes."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from scheduler.runtime import migrate
from tests.support.sqlhelp import plain_dsn
from tests.support.status import PENDING


async def test_constraints_and_the_pause_annotation(database_url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="pause_after_failures_positive"):
            await conn.execute(
                "INSERT INTO schedules (name, task, cron, pause_after_failures) "
                "VALUES ('x', 'demo.noop', '@daily', 0)"
            )
        await conn.execute(
            "INSERT INTO schedules (name, task, cron, enabled, paused_reason, paused_by) "
            "VALUES ('s', 'demo.noop', '@daily', false, 'why', 'me')"
        )
        assert await conn.fetchval("SELECT paused_reason FROM schedules") == "why"
        await conn.execute("UPDATE schedules SET enabled = true")
        assert await conn.fetchrow("SELECT paused_reason, paused_by FROM schedules") == (None, None)
        root = uuid.uuid4()
        for trigger in ("backfill", "retry"):
            await conn.execute(
                "INSERT INTO executions (id, task, args, kwargs, trigger, status_id, root_id, "
                f"parent_id) VALUES ($1, 'demo.noop', '[]', '{{}}', $2, {PENDING}, $3, $3)",
                uuid.uuid4(),
                trigger,
                root,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
                f"VALUES ($1, 'demo.noop', '[]', '{{}}', 'other', {PENDING})",
                uuid.uuid4(),
            )
    finally:
        await conn.close()


async def test_downgrade_to_0002_drops_the_columns(empty_database_url: str) -> None:
    url = empty_database_url
    await migrate.upgrade(url)
    await migrate.downgrade(url, "0002_representable_times")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name IN ('schedules', 'executions')"
            )
        }
    finally:
        await conn.close()
    assert not columns & {"paused_reason", "pause_after_failures", "parent_id", "root_id"}
    await migrate.upgrade(url)
