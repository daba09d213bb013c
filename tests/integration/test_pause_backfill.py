"""Pause with a reason, backfill, trigger with other arguments and "last status", on a real
database and broker. Auto-pause and held runs are in test_auto_pause."""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.settings import get_settings
from scheduler import api
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError, NotFoundError
from tests.support.cli import one_error_line
from tests.support.history import insert_runs, schedule_row
from tests.support.procs import query

HOUR = datetime(2026, 11, 2, tzinfo=UTC)


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
    assert schedule_row(database_url, "nightly")["paused_reason"] is None


def test_cli_pause_resume_disable_enable(cli: Any, database_url: str) -> None:
    cli("schedules", "add", "ping", "--task", "demo.noop", "--every", "1m")
    paused = cli("schedules", "pause", "ping", "--reason", "noisy alerts")
    assert paused.exit_code == 0, paused.output
    row = schedule_row(database_url, "ping")
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
    assert schedule_row(database_url, "ping")["paused_by"] is None
    assert cli("schedules", "disable", "ping").exit_code == 0
    assert cli("schedules", "resume", "ping").exit_code == 0
    assert schedule_row(database_url, "ping")["enabled"] is True
    assert "no schedule named 'ghost'" in one_error_line(
        cli("schedules", "pause", "ghost", "--reason", "x")
    )
    assert "no schedule named 'ghost'" in one_error_line(cli("schedules", "resume", "ghost"))
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
    assert schedule_row(database_url, "etl")["pause_after_failures"] == 3
    cli("schedules", "update", "etl", "--pause-after-failures", "5")
    assert schedule_row(database_url, "etl")["pause_after_failures"] == 5
    exported = cli("export").output
    assert "pause_after_failures: 5" in exported
    path = tmp_path / "s.yaml"
    path.write_text(exported)
    assert "1 unchanged" in cli("apply", str(path)).output
    cli("schedules", "update", "etl", "--pause-after-failures", "0")
    assert schedule_row(database_url, "etl")["pause_after_failures"] is None
    with pytest.raises(InvalidScheduleError, match="pause after failures"):
        api.upsert_schedule(
            api.ScheduleDefinition(
                name="bad", task="demo.noop", cron="@daily", pause_after_failures=0
            )
        )


def test_last_status_is_the_newest_run_that_started_or_finished(
    database_url: str, broker_url: str
) -> None:
    api.upsert_schedule(api.ScheduleDefinition(name="ping", task="demo.noop", cron="* * * * *"))
    insert_runs(database_url, "ping", ["failed", "success", "pending", "queued"])
    [row] = api.list_schedules()
    assert (row["last_status"], row["upcoming_runs"]) == ("success", 2)
    insert_runs(database_url, "ping", ["skipped"], first_minute=10)
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
    assert "--kwargs is not valid JSON" in one_error_line(
        cli("schedules", "trigger", "report", "--kwargs", "{nope")
    )
    assert "kwargs must be a JSON object" in one_error_line(
        cli("schedules", "trigger", "report", "--kwargs", "[1]")
    )
    assert "no schedule named 'ghost'" in one_error_line(cli("schedules", "trigger", "ghost"))


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
    error = one_error_line(
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
    assert "--to is before --from" in one_error_line(
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
    assert "invalid time" in one_error_line(
        cli("schedules", "backfill", "minutely", "--from", "yesterday", "--to", "2026-11-02")
    )
    assert "no schedule named 'ghost'" in one_error_line(
        cli("schedules", "backfill", "ghost", "--from", "2026-11-02", "--to", "2026-11-03")
    )
    # slots after now are the beat's
    future = datetime.now(UTC) + timedelta(days=1)
    assert api.backfill("minutely", future, future + timedelta(minutes=5)).created == []
