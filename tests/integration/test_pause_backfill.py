"""Pause with a reason, auto-pause after failures, backfill, trigger with other arguments,
run trees and "last status", on a real database and broker."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result

from config.celery import app
from config.settings import get_settings
from scheduler import api
from scheduler.broker.publisher import Publisher
from scheduler.cli import main
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError, NotFoundError
from scheduler.worker import followup
from tests.support.procs import query

HOUR = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def cli(database_url: str, broker_url: str) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def _schedule(database_url: str, name: str) -> dict[str, Any]:
    return query(database_url, "SELECT * FROM schedules WHERE name = $1", name)[0]


def test_pause_and_resume_with_reason_and_actor(database_url: str, broker_url: str) -> None:
    api.upsert_schedule(api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *"))
    row = api.pause_schedule("nightly", "warehouse migration", actor="alice")
    assert (row["enabled"], row["paused_reason"], row["paused_by"]) == (
        False,
        "warehouse migration",
        "alice",
    )
    assert row["paused_at"] is not None
    resumed = api.resume_schedule("nightly", actor="bob")
    assert resumed["enabled"] is True
    assert (resumed["paused_reason"], resumed["paused_by"], resumed["paused_at"]) == (None,) * 3
    with pytest.raises(NotFoundError, match="no schedule named 'ghost'"):
        api.pause_schedule("ghost", "x")
    with pytest.raises(NotFoundError, match="no schedule named 'ghost'"):
        api.resume_schedule("ghost")
    with pytest.raises(InvalidScheduleError, match="needs a reason"):
        api.pause_schedule("nightly", "  ")
    # any enable (here a raw one) clears the annotation; a plain disable carries none
    api.pause_schedule("nightly", "again", actor="alice")
    query(database_url, "UPDATE schedules SET enabled = true WHERE name = 'nightly'")
    assert _schedule(database_url, "nightly")["paused_reason"] is None


def test_cli_pause_resume_disable_enable(cli: Any, database_url: str) -> None:
    cli("schedules", "add", "ping", "--task", "demo.noop", "--every", "1m")
    paused = cli("schedules", "pause", "ping", "--reason", "noisy alerts")
    assert paused.exit_code == 0, paused.output
    row = _schedule(database_url, "ping")
    assert (row["enabled"], row["paused_reason"], row["paused_by"]) == (
        False,
        "noisy alerts",
        getpass.getuser(),
    )
    listing = {s["name"]: s for s in json.loads(cli("schedules", "list", "--json").output)}
    assert listing["ping"]["paused_reason"] == "noisy alerts"
    assert "paused: noisy alerts" in cli("schedules", "list").output
    assert "noisy alerts" in cli("schedules", "show", "ping").output
    assert cli("schedules", "enable", "ping").exit_code == 0
    assert _schedule(database_url, "ping")["paused_by"] is None
    assert cli("schedules", "disable", "ping").exit_code == 0
    assert cli("schedules", "resume", "ping").exit_code == 0
    assert _schedule(database_url, "ping")["enabled"] is True
    assert "no schedule named 'ghost'" in _one_error_line(
        cli("schedules", "pause", "ghost", "--reason", "x")
    )
    assert "no schedule named 'ghost'" in _one_error_line(cli("schedules", "resume", "ghost"))
    assert cli("schedules", "pause", "ping").exit_code == 2  # --reason is required


def test_pause_after_failures_round_trips_cli_yaml_and_api(
    cli: Any, database_url: str, tmp_path: Any
) -> None:
    cli(
        "schedules",
        "add",
        "etl",
        "--task",
        "demo.noop",
        "--every",
        "5m",
        "--pause-after-failures",
        "3",
    )
    assert _schedule(database_url, "etl")["pause_after_failures"] == 3
    cli("schedules", "update", "etl", "--pause-after-failures", "5")
    assert _schedule(database_url, "etl")["pause_after_failures"] == 5
    exported = cli("export").output
    assert "pause_after_failures: 5" in exported
    path = tmp_path / "s.yaml"
    path.write_text(exported)
    assert "1 unchanged" in cli("apply", str(path)).output
    cli("schedules", "update", "etl", "--pause-after-failures", "0")
    assert _schedule(database_url, "etl")["pause_after_failures"] is None
    with pytest.raises(InvalidScheduleError, match="pause after failures"):
        api.upsert_schedule(
            api.ScheduleDefinition(
                name="bad", task="demo.noop", cron="@daily", pause_after_failures=0
            )
        )


def _insert_runs(
    database_url: str,
    schedule: str,
    statuses: list[str],
    *,
    minutes_apart: int = 1,
    first_minute: int = 0,
) -> list[uuid.UUID]:
    """Runs of `schedule`, oldest first, finished (or not) with the given status codes."""
    ids = []
    for i, code in enumerate(statuses):
        execution_id = uuid.uuid4()
        ids.append(execution_id)
        query(
            database_url,
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
            " status_id, created_at, started_at, completed_at, error_message) "
            "SELECT $1, s.id, s.task, '[]', '{}', 'schedule', now() + $2 * interval '1 minute',"
            " st.id, now() + $2 * interval '1 minute',"
            " CASE WHEN st.code IN ('pending', 'queued') THEN NULL ELSE now() END,"
            " CASE WHEN st.is_terminal THEN now() + $2 * interval '1 minute' END,"
            " CASE WHEN st.code = 'failed' THEN 'boom ' || $2 END "
            "FROM schedules s, execution_statuses st WHERE s.name = $3 AND st.code = $4",
            execution_id,
            first_minute + i * minutes_apart,
            schedule,
            code,
        )
    return ids


def test_last_status_is_the_newest_run_that_started_or_finished(
    database_url: str, broker_url: str
) -> None:
    api.upsert_schedule(api.ScheduleDefinition(name="ping", task="demo.noop", cron="* * * * *"))
    _insert_runs(database_url, "ping", ["failed", "success", "pending", "queued"])
    [row] = api.list_schedules()
    assert (row["last_status"], row["upcoming_runs"]) == ("success", 2)
    _insert_runs(database_url, "ping", ["skipped"], first_minute=10)
    assert api.list_schedules()[0]["last_status"] == "skipped"


def test_trigger_with_other_arguments_is_recorded_on_the_run(
    cli: Any, database_url: str, broker_url: str
) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="report", task="demo.sleep", cron="0 3 * * *", kwargs={"seconds": 1}
        )
    )
    result = api.trigger("report", kwargs={"seconds": 0.01}, args=[])
    assert result.status is ExecutionStatus.QUEUED
    run = api.get_execution(result.execution_id)
    detail = query(
        database_url,
        "SELECT args, kwargs, trigger FROM executions WHERE id = $1",
        result.execution_id,
    )[0]
    assert json.loads(detail["kwargs"])["seconds"] == 0.01
    assert (json.loads(detail["args"]), detail["trigger"], run["status"]) == (
        [],
        "manual",
        "queued",
    )
    shown = cli("schedules", "trigger", "report", "--kwargs", '{"seconds": 2}', "--json")
    execution_id = uuid.UUID(json.loads(shown.output)["execution_id"])
    sent = query(database_url, "SELECT kwargs FROM executions WHERE id = $1", execution_id)[0]
    assert json.loads(sent["kwargs"])["seconds"] == 2
    assert "--kwargs is not valid JSON" in _one_error_line(
        cli("schedules", "trigger", "report", "--kwargs", "{nope")
    )
    assert "kwargs must be a JSON object" in _one_error_line(
        cli("schedules", "trigger", "report", "--kwargs", "[1]")
    )
    assert "no schedule named 'ghost'" in _one_error_line(cli("schedules", "trigger", "ghost"))


def test_backfill_twice_is_one_set_of_runs(cli: Any, database_url: str, broker_url: str) -> None:
    api.upsert_schedule(api.ScheduleDefinition(name="hourly", task="demo.noop", cron="0 * * * *"))
    start, end = HOUR, HOUR + timedelta(hours=5)
    dry = api.backfill("hourly", start, end, dry_run=True)
    assert len(dry.created) == 6
    assert dry.execution_ids == []
    assert query(database_url, "SELECT count(*) AS n FROM executions")[0]["n"] == 0
    first = api.backfill("hourly", start, end)
    assert first.created == [HOUR + timedelta(hours=h) for h in range(6)]
    assert (first.existing, first.skipped, len(first.execution_ids)) == ([], [], 6)
    rows = query(
        database_url,
        "SELECT scheduled_for, trigger, status_id FROM executions ORDER BY scheduled_for",
    )
    assert [r["scheduled_for"] for r in rows] == first.created
    assert {(r["trigger"], r["status_id"]) for r in rows} == {
        ("backfill", ExecutionStatus.QUEUED.id)
    }
    again = api.backfill("hourly", start - timedelta(hours=1), end)
    assert again.created == [HOUR - timedelta(hours=1)]
    assert again.existing == first.created
    assert query(database_url, "SELECT count(*) AS n FROM executions")[0]["n"] == 7
    out = json.loads(
        cli(
            "schedules",
            "backfill",
            "hourly",
            "--from",
            "2026-11-02T00:00Z",
            "--to",
            "2026-11-02T05:00Z",
            "--json",
        ).output
    )
    assert (out["created"], len(out["existing"])) == ([], 6)
    text = cli(
        "schedules",
        "backfill",
        "hourly",
        "--from",
        "2026-11-02T00:00Z",
        "--to",
        "2026-11-02T01:00Z",
    ).output
    assert "created 0 runs, 2 slots already ran" in text
    assert "already ran: 2026-11-02 00:00:00 UTC" in text


def test_backfill_bounds_overlap_and_errors(
    cli: Any, database_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="guarded", task="demo.noop", cron="0 * * * *", overlap_policy="skip"
        )
    )
    report = api.backfill("guarded", HOUR, HOUR + timedelta(hours=3))
    assert report.created == [HOUR]
    assert report.skipped == [HOUR + timedelta(hours=h) for h in (1, 2, 3)]
    forced = api.backfill("guarded", HOUR, HOUR + timedelta(hours=3), force=True)
    assert forced.created == report.skipped
    assert forced.existing == [HOUR]
    api.upsert_schedule(api.ScheduleDefinition(name="minutely", task="demo.noop", cron="* * * * *"))
    monkeypatch.setenv("SCHEDULER_BACKFILL_MAX", "100")
    get_settings.cache_clear()
    error = _one_error_line(
        cli(
            "schedules",
            "backfill",
            "minutely",
            "--from",
            "2026-11-02T00:00Z",
            "--to",
            "2026-11-02T02:00Z",
        )
    )
    assert "more than 100 slots (SCHEDULER_BACKFILL_MAX)" in error
    assert query(database_url, "SELECT count(*) AS n FROM executions")[0]["n"] == 4
    assert "--to is before --from" in _one_error_line(
        cli(
            "schedules",
            "backfill",
            "minutely",
            "--from",
            "2026-11-02T02:00Z",
            "--to",
            "2026-11-02T00:00Z",
        )
    )
    assert "invalid time" in _one_error_line(
        cli("schedules", "backfill", "minutely", "--from", "yesterday", "--to", "2026-11-02")
    )
    assert "no schedule named 'ghost'" in _one_error_line(
        cli("schedules", "backfill", "ghost", "--from", "2026-11-02", "--to", "2026-11-03")
    )
    # slots after now are the beat's
    future = datetime.now(UTC) + timedelta(days=1)
    assert api.backfill("minutely", future, future + timedelta(minutes=5)).created == []


async def _racing_failures(database_url: str, ids: list[uuid.UUID], publisher: Publisher) -> None:
    """Each failure written by its own connection at the same moment, as workers do."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connections = [await asyncpg.connect(dsn) for _ in ids]
    try:
        await asyncio.gather(
            *(
                followup.finish_run(
                    conn,
                    execution_id,
                    status_id=ExecutionStatus.FAILED.id,
                    duration_ms=5,
                    completed_at=datetime.now(UTC),
                    error_type="RuntimeError",
                    error_message=f"disk full on {i}\nsecond line",
                    publisher=publisher,
                )
                for i, (conn, execution_id) in enumerate(zip(connections, ids, strict=True))
            )
        )
    finally:
        for conn in connections:
            await conn.close()


def test_auto_pause_after_n_failures_once_with_writers_racing(
    database_url: str, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="etl", task="demo.fail", cron="* * * * *", pause_after_failures=3
        )
    )
    _insert_runs(database_url, "etl", ["failed", "success", "failed"])
    running = _insert_runs(database_url, "etl", ["running"] * 6)
    publisher = Publisher(app)
    try:
        with caplog.at_level(logging.WARNING, logger="scheduler.worker.followup"):
            asyncio.run(_racing_failures(database_url, running[:1], publisher))
            assert _schedule(database_url, "etl")["enabled"] is True  # 2 in a row: not yet
            asyncio.run(_racing_failures(database_url, running[1:], publisher))
    finally:
        publisher.close()
    row = _schedule(database_url, "etl")
    assert row["enabled"] is False
    assert row["paused_by"] == followup.AUTO_PAUSE_ACTOR
    assert row["paused_reason"].startswith(
        "paused after 3 consecutive failures (last: disk full on"
    )
    assert "second line" not in row["paused_reason"]
    assert [r.message for r in caplog.records].count(f"schedule etl {row['paused_reason']}") == 1
    assert sum("consecutive failures" in r.message for r in caplog.records) == 1


def test_auto_pause_counts_afresh_after_resume_and_ignores_skips(
    database_url: str, broker_url: str
) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="etl", task="demo.fail", cron="* * * * *", pause_after_failures=2
        )
    )
    running = _insert_runs(database_url, "etl", ["failed", "skipped", "running"])[2:]
    publisher = Publisher(app)
    try:
        asyncio.run(_racing_failures(database_url, running, publisher))
        assert _schedule(database_url, "etl")["enabled"] is False
        api.resume_schedule("etl")
        more = _insert_runs(database_url, "etl", ["running"], first_minute=10)
        asyncio.run(_racing_failures(database_url, more, publisher))
        assert _schedule(database_url, "etl")["enabled"] is True  # one failure since resume
    finally:
        publisher.close()


def test_lost_runs_pause_through_the_reaper(database_url: str, broker_url: str) -> None:
    from scheduler.beat.reaper import reap_lost
    from scheduler.runtime.db import get_runtime

    api.upsert_schedule(
        api.ScheduleDefinition(
            name="etl", task="demo.fail", cron="* * * * *", pause_after_failures=2
        )
    )
    _insert_runs(database_url, "etl", ["running", "running"])
    query(
        database_url,
        "UPDATE executions SET worker = 'gone@nowhere:1', started_at = now() - interval '1 hour'",
    )

    async def reap() -> int:
        async with get_runtime().sessions() as session, session.begin():
            return await reap_lost(session, now=datetime.now(UTC), time_limits_s={"demo.fail": 1.0})

    assert get_runtime().run(reap()) == 2
    row = _schedule(database_url, "etl")
    assert row["enabled"] is False
    assert "(last: still running past its hard time limit)" in row["paused_reason"]


def test_buffered_run_is_held_then_released_once(database_url: str, broker_url: str) -> None:
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="slow",
            task="demo.sleep",
            cron="0 3 * * *",
            overlap_policy="buffer_one",
            kwargs={"seconds": 2},
        )
    )
    [running] = _insert_runs(database_url, "slow", ["running"])
    buffered = api.trigger("slow")
    assert buffered.status is ExecutionStatus.PENDING
    assert "starts when the run in progress has finished" in (buffered.reason or "")
    assert api.trigger("slow").status is ExecutionStatus.SKIPPED
    # the outbox sweep leaves a held run alone, however old
    query(database_url, "UPDATE executions SET created_at = created_at - interval '1 hour'")
    from scheduler.runtime.db import get_runtime
    from scheduler.store.outbox import OutboxStore

    async def stale() -> list[Any]:
        async with get_runtime().sessions() as session, session.begin():
            return await OutboxStore.lock_stale_pending(
                session, older_than=datetime.now(UTC), limit=100
            )

    assert get_runtime().run(stale()) == []
    publisher = Publisher(app)
    try:

        async def finish_twice() -> None:
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
            conn = await asyncpg.connect(dsn)
            try:
                for _ in range(2):  # a duplicate outcome changes nothing
                    await followup.finish_run(
                        conn,
                        running,
                        status_id=ExecutionStatus.SUCCESS.id,
                        duration_ms=5,
                        completed_at=datetime.now(UTC),
                        publisher=publisher,
                    )
            finally:
                await conn.close()

        asyncio.run(finish_twice())
    finally:
        publisher.close()
    row = query(
        database_url,
        "SELECT status_id, queued_at FROM executions WHERE id = $1",
        buffered.execution_id,
    )[0]
    assert row["status_id"] == ExecutionStatus.QUEUED.id
    assert row["queued_at"] is not None
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        messages = [json.loads(m) for m in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    [released] = [m for m in messages if m["headers"]["id"] == str(buffered.execution_id)]
    import base64

    args, kwargs, _ = json.loads(base64.b64decode(released["body"]))
    assert (args, kwargs) == ([], {"seconds": 2, "execution_id": str(buffered.execution_id)})
