"""Partitions of `executions`: made ahead by any number of processes, dropped when past
retention, and the batched deletes that keep what retention keeps."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings
from scheduler.beat.upkeep import Upkeep, prune
from scheduler.cli import main
from scheduler.core.domain import ExecutionStatus
from scheduler.core.execution_ids import id_floor, slot_execution_id
from scheduler.core.retention import Policy
from scheduler.runtime import db as scheduler_db
from scheduler.store import partitions, retention
from scheduler.store.partitions import Interval
from tests.support.procs import query
from tests.support.sqlhelp import plain_dsn
from tests.support.status import SUCCESS

NOW = datetime.now(UTC)


async def _partition_names(engine: AsyncEngine) -> list[str]:
    async with scheduler_db.session_factory(engine)() as session:
        return [p.name for p in await partitions.list_partitions(session)]


async def test_concurrent_maintenance_creates_each_partition_once(engine: AsyncEngine) -> None:
    settings = Settings(partition_interval="day", partition_ahead_days=21)
    sessions = scheduler_db.session_factory(engine)

    async def maintain(wait: bool) -> partitions.MaintainReport:
        async with sessions() as session, session.begin():
            return await retention.maintain(session, settings, NOW, wait=wait)

    reports = await asyncio.gather(*(maintain(wait=i % 2 == 0) for i in range(4)))
    created = [name for r in reports for name in r.created]
    assert created  # the weekly partitions of the migration end before 21 days
    assert len(created) == len(set(created))
    names = await _partition_names(engine)
    assert (
        partitions.partition_name(
            partitions.period_start(NOW + timedelta(days=21), Interval.DAY), Interval.DAY
        )
        in names
    )
    again = await maintain(wait=True)
    assert again.created == []
    assert again.dropped == []


async def _run(
    conn: asyncpg.Connection, slot: datetime, status: ExecutionStatus, **kw: Any
) -> uuid.UUID:
    run_id = slot_execution_id(kw.get("schedule_id", 1), slot)
    await conn.execute(
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
        " status_id, created_at) VALUES ($1, $2, 'demo.noop', '[]', '{}', 'schedule', $3, $4, $3)",
        run_id,
        kw.get("schedule_id", 1),
        slot,
        status.id,
    )
    return run_id


async def test_retention_drops_whole_partitions_and_deletes_the_rest(
    engine: AsyncEngine, database_url: str
) -> None:
    sessions = scheduler_db.session_factory(engine)
    old = partitions.period_start(NOW - timedelta(days=40), Interval.DAY)
    mixed = partitions.period_start(NOW - timedelta(days=20), Interval.DAY)
    ancient = partitions.period_start(NOW - timedelta(days=120), Interval.DAY)
    active = partitions.period_start(NOW - timedelta(days=100), Interval.DAY)
    async with sessions() as session, session.begin():
        for start in (ancient, active, old, mixed):
            assert await partitions.create_partition(
                session, start, start + timedelta(days=1), Interval.DAY
            )
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO schedules (name, task, interval_seconds, options) VALUES"
            " ('plain', 'demo.noop', 60, '{}'),"
            " ('kept', 'demo.noop', 60, '{\"retention_days\": {\"success\": 30}}')"
        )
        for minute in range(30):
            await _run(conn, old + timedelta(minutes=minute), ExecutionStatus.SUCCESS)
        # past every retention: dropped without a scan; unless a run there is still going
        await _run(conn, ancient, ExecutionStatus.FAILED)
        stuck = await _run(conn, active, ExecutionStatus.RUNNING)
        # 20 days old: success is past 14 days, the failure is within 90, the running run stays
        successes = [
            await _run(conn, mixed + timedelta(minutes=m), ExecutionStatus.SUCCESS)
            for m in range(12)
        ]
        failure = await _run(conn, mixed + timedelta(hours=1), ExecutionStatus.FAILED)
        running = await _run(conn, mixed + timedelta(hours=2), ExecutionStatus.RUNNING)
        await _run(conn, mixed + timedelta(hours=3), ExecutionStatus.SKIPPED)
        overridden = await _run(
            conn, mixed + timedelta(hours=4), ExecutionStatus.SUCCESS, schedule_id=2
        )
        # a Celery uuid4 id of a direct call: the default partition
        direct = uuid.uuid4()
        await conn.execute(
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id, created_at)"
            " VALUES ($1, 'demo.noop', '[]', '{}', 'direct', 5, $2)",
            direct,
            NOW - timedelta(days=15),
        )
        policy = Policy.from_settings(Settings())
        report = await prune(sessions, policy, NOW, batch=5)
        assert report.dropped == [
            partitions.partition_name(ancient, Interval.DAY),
            partitions.partition_name(old, Interval.DAY),
        ]
        assert report.compacted == [partitions.partition_name(mixed, Interval.DAY)]
        assert report.deleted == len(successes) + 2  # the skipped run and the direct call
        left = {r["id"] for r in await conn.fetch("SELECT id FROM executions")}
        assert left == {failure, running, overridden, stuck}
    finally:
        await conn.close()
    assert partitions.partition_name(mixed, Interval.DAY) in await _partition_names(engine)


async def test_a_new_partition_takes_the_rows_of_its_range_from_the_default(
    engine: AsyncEngine, database_url: str
) -> None:
    start = partitions.period_start(NOW + timedelta(days=60), Interval.DAY)
    stray = uuid.UUID(int=id_floor(start + timedelta(hours=5)).int | (4 << 76) | 0x1234)
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id)"
            f" VALUES ($1, 'demo.noop', '[]', '{{}}', 'direct', {SUCCESS})",
            stray,
        )
        async with scheduler_db.session_factory(engine)() as session, session.begin():
            name = await partitions.create_partition(
                session, start, start + timedelta(days=1), Interval.DAY
            )
        assert name is not None
        where = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM executions WHERE id = $1", stray
        )
        assert where == f"{partitions.SCHEMA}.{name}"
    finally:
        await conn.close()


def test_cli_partitions_and_prune(database_url: str, broker_url: str) -> None:
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    created = json.loads(cli("partitions", "maintain", "--json").output)
    assert created["interval"] in ("day", "week")
    listed = json.loads(cli("partitions", "list", "--json").output)
    assert listed[-1]["name"] == "executions_default"
    assert {p["name"] for p in listed} >= set(created["created"])
    query(  # a raw row with a bad override follows the defaults, it does not fail the prune
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, options) VALUES ('raw', 'demo.noop',"
        ' 60, \'{"retention_days": {"success": "x", "failure": -1}}\')',
    )
    pruned = json.loads(cli("prune", "--json").output)
    assert pruned["retention"] == {"success": "14d", "failure": "90d", "skipped": "7d"}
    assert cli("prune", "--keep-last", "3").exit_code == 2


async def test_the_beat_upkeep_maintains_and_rewrites_without_alerting_again(
    engine: AsyncEngine, database_url: str
) -> None:
    sessions = scheduler_db.session_factory(engine)
    day = partitions.period_start(NOW - timedelta(days=3), Interval.DAY)
    week = partitions.partition_name(partitions.period_start(day, Interval.WEEK), Interval.WEEK)
    async with sessions() as session, session.begin():
        # the template's weekly partitions begin with this week: from Thursday to Sunday the
        # day three days back lies in this week's (empty) partition, which must make way
        await session.execute(text(f"DROP TABLE IF EXISTS scheduler_partitions.{week}"))
        assert await partitions.create_partition(
            session, day, day + timedelta(days=1), Interval.DAY
        )
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO schedules (name, task, interval_seconds, options) VALUES"
            " ('short', 'demo.noop', 60, '{\"retention_days\": {\"success\": 1}}')"
        )
        await conn.execute(
            "INSERT INTO notification_rules (name, schedules, schedules_regex, events,"
            " webhook_url) VALUES ('r', '*', '^.*$', ARRAY['missed'], 'http://127.0.0.1:9/x')"
        )
        for minute in range(3):
            await _run(conn, day + timedelta(minutes=minute), ExecutionStatus.SUCCESS)
        missed = await _run(conn, day + timedelta(hours=1), ExecutionStatus.MISSED)
        assert await conn.fetchval("SELECT count(*) FROM notification_deliveries") == 1
        await conn.execute("DELETE FROM notification_deliveries")
        upkeep = Upkeep(sessions, Settings(partition_interval="day", partition_ahead_days=21))
        task = upkeep.poke(NOW)
        assert task is not None
        await task
        assert upkeep.poke(NOW) is None  # not due again before partition_maintain_s
        # the successes (1 day for this schedule) went, the missed run (7 days) was moved back
        assert [r["id"] for r in await conn.fetch("SELECT id FROM executions")] == [missed]
        assert await conn.fetchval("SELECT count(*) FROM notification_deliveries") == 0
    finally:
        await conn.close()
    names = await _partition_names(engine)
    assert (
        partitions.partition_name(
            partitions.period_start(NOW + timedelta(days=21), Interval.DAY), Interval.DAY
        )
        in names
    )
