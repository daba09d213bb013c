"""Hostile schedule rows on a real database: deep or huge JSON, markup, control characters.

One bad row is flagged alone; every other schedule keeps its timing, and every read path
(CLI, export, apply, the Python API) shows the row as broken instead of failing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler import api
from scheduler.beat.dispatcher import Dispatcher
from scheduler.runtime.db import session_factory
from tests.support.sqlhelp import sql
from tests.support.status import FAILED

NOW = datetime.now(UTC).replace(microsecond=0)
DEEP = '{"a": ' * 3000 + "1" + "}" * 3000
"""Valid jsonb, but past what Python's parser (and any reader of ours) can take."""


async def insert_legacy(engine: AsyncEngine, statement: str, **params: object) -> None:
    """A row written before the database refused such values (the bounds trigger off)."""
    await sql(engine, "ALTER TABLE schedules DISABLE TRIGGER schedules_definition_bounds")
    try:
        await sql(engine, statement, **params)
    finally:
        await sql(engine, "ALTER TABLE schedules ENABLE TRIGGER schedules_definition_bounds")


async def test_a_deep_row_is_flagged_alone_and_the_others_keep_time(
    engine: AsyncEngine, dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "VALUES ('good', 'demo.noop', 10, :t)",
        t=NOW,
    )
    await insert_legacy(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, kwargs) "
        "VALUES ('deep', 'demo.noop', 10, CAST(:k AS jsonb))",
        k=DEEP,
    )
    with caplog.at_level(logging.WARNING, logger="scheduler.beat.engine"):
        result = await dispatcher.tick(NOW)
    assert (result.flagged, result.published) == (1, 1)
    rows = {r["name"]: r for r in await sql(engine, "SELECT * FROM schedules")}
    assert "kwargs cannot be read" in str(rows["deep"]["last_error"])
    assert rows["good"]["next_run_at"] == NOW + timedelta(seconds=10)
    later = await dispatcher.tick(NOW + timedelta(seconds=10))
    assert (later.published, later.flagged) == (1, 0)


async def test_the_database_refuses_deep_and_huge_definitions(engine: AsyncEngine) -> None:
    for value in (DEEP, '{"a": ' * 65 + "1" + "}" * 65, json.dumps({"x": "y" * 1_000_001})):
        with pytest.raises(DBAPIError, match=r"nested deeper than 64|larger than 1 MB"):
            await sql(
                engine,
                "INSERT INTO schedules (name, task, cron, kwargs) "
                "VALUES ('x', 'demo.noop', '* * * * *', CAST(:k AS jsonb))",
                k=value,
            )
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron, kwargs) "
        "VALUES ('ok', 'demo.noop', '* * * * *', CAST(:k AS jsonb))",
        k='{"a": ' * 64 + "1" + "}" * 64,
    )


async def test_every_read_path_shows_a_deep_row_as_broken(
    engine: AsyncEngine, cli: Any, tmp_path: Path
) -> None:
    await sql(
        engine, "INSERT INTO schedules (name, task, cron) VALUES ('fine', 'demo.noop', '@daily')"
    )
    await insert_legacy(
        engine,
        "INSERT INTO schedules (name, task, cron, kwargs, enabled) "
        "VALUES ('deep', 'demo.noop', '@daily', CAST(:k AS jsonb), false)",
        k=DEEP,
    )
    listed = cli("schedules", "list")
    assert listed.exit_code == 0
    assert "deep" in listed.output
    assert "fine" in listed.output
    as_json = json.loads(cli("schedules", "list", "--json").output)
    assert [s["name"] for s in as_json] == ["deep", "fine"]
    assert "unreadable" in as_json[0]["kwargs"]
    assert "unreadable" in cli("schedules", "show", "deep").output
    exported = cli("export")
    assert exported.exit_code == 0
    assert [s["name"] for s in yaml.safe_load(exported.stdout)["schedules"]] == ["fine"]
    assert "cannot be exported" in exported.stderr
    refused = cli("schedules", "update", "deep", "--cron", "@hourly")
    assert refused.exit_code == 2
    assert "kwargs cannot be read" in refused.output
    mended = cli("schedules", "update", "deep", "--kwargs", '{"ok": 1}')
    assert mended.exit_code == 0, mended.output
    await insert_legacy(
        engine,
        "INSERT INTO schedules (name, task, cron, kwargs) "
        "VALUES ('deep2', 'demo.noop', '@daily', CAST(:k AS jsonb))",
        k=DEEP,
    )
    async with session_factory(engine)() as session:
        rows = await api.alist_schedules(session=session)
    assert {r["name"] for r in rows} == {"deep", "deep2", "fine"}
    plan = tmp_path / "plan.yaml"
    plan.write_text("schedules:\n  - {name: fine, task: demo.noop, cron: '@daily'}\n")
    applied = cli("apply", str(plan), "--prune", "--dry-run")
    assert applied.exit_code == 0
    assert "- deep2" in applied.output
    assert cli("schedules", "remove", "deep2", "--yes").exit_code == 0


def test_entry_points_refuse_what_the_beat_would(cli: Any, tmp_path: Path) -> None:
    deep = '{"a": ' * 65 + "1" + "}" * 65
    for args in (
        ("--kwargs", deep),
        ("--kwargs", json.dumps({"x": "y" * 1_000_001})),
        ("--args", "[" * 2000 + "]" * 2000),
    ):
        result = cli("schedules", "add", "x", "--task", "demo.noop", "--every", "5m", *args)
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert "nested" in result.output or "1 MB" in result.output
    plan = tmp_path / "deep.yaml"
    plan.write_text(
        "schedules:\n  - name: y\n    task: demo.noop\n    every: 5m\n    kwargs: "
        + deep.replace('"a"', "a")
        + "\n"
    )
    result = cli("apply", str(plan))
    assert result.exit_code == 2
    assert "nested deeper than 64" in result.output
    with pytest.raises(Exception, match="nested deeper than 64"):
        api.upsert_schedule(
            api.ScheduleDefinition(
                name="z", task="demo.noop", cron="@daily", kwargs=json.loads(deep)
            )
        )


async def test_markup_and_escapes_in_data_print_as_written(engine: AsyncEngine, cli: Any) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron, description) VALUES "
        "('[prod] x', 'demo.noop', '@daily', 'a'), ('bad [/] name', 'demo.noop', '@daily', 'b'), "
        "(:ansi, 'demo.noop', '@daily', 'c')",
        ansi="red\x1b[31m name\x07",
    )
    await sql(
        engine,
        "INSERT INTO executions (id, task, status_id, trigger, args, kwargs, error_message, traceback) "
        f"VALUES (gen_random_uuid(), 'demo.noop', {FAILED}, 'manual', '[]', '{{}}', :err, :err)",
        err="boom [/] [bold]loud[/bold] \x1b[2J\x1b]0;title\x07",
    )
    listed = cli("schedules", "list")
    assert listed.exit_code == 0, listed.output
    assert "[prod] x" in listed.output
    assert "bad [/] name" in listed.output
    assert "\x1b" not in listed.output
    assert "\x07" not in listed.output
    assert "red name" in listed.output
    shown = cli("schedules", "show", "[prod] x")
    assert shown.exit_code == 0
    assert "[prod] x" in shown.output
    history = cli("history")
    assert history.exit_code == 0, history.output
    assert "boom [/] [bold]loud[/bold]" in history.output
    assert "\x1b" not in history.output
    run_id = (await sql(engine, "SELECT id FROM executions"))[0]["id"]
    details = cli("show", str(run_id))
    assert details.exit_code == 0
    assert "\x1b" not in details.output


def test_coercions_are_refusals(cli: Any, tmp_path: Path) -> None:
    empty_tz = cli("schedules", "add", "x", "--task", "demo.noop", "--cron", "@daily", "--tz", "")
    assert empty_tz.exit_code == 2
    assert "time zone" in empty_tz.output
    plan = tmp_path / "grace.yaml"
    plan.write_text(
        "schedules:\n  - {name: g, task: demo.noop, every: 5m, misfire_grace_seconds: 1.5}\n"
    )
    grace = cli("apply", str(plan))
    assert grace.exit_code == 2
    assert "whole number" in grace.output
    fast = cli("schedules", "add", "f", "--task", "demo.noop", "--every", "0.001")
    assert fast.exit_code == 2
    assert "at least 1s" in fast.output
    huge = cli(
        "schedules", "add", "h", "--task", "demo.noop", "--every", "5m", "--jitter", "9" * 30
    )
    assert huge.exit_code == 2
    assert "Overflow" not in huge.output
    assert "DBAPI" not in huge.output
    assert len(huge.output.strip().splitlines()) == 1


async def test_each_flagged_row_is_logged_once_per_change_with_a_summary(
    engine: AsyncEngine, dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds) "
        "SELECT 'bad-' || i, 'nope.nope', 60 FROM generate_series(1, 30) i",
    )
    with caplog.at_level(logging.WARNING, logger="scheduler.beat.engine"):
        assert (await dispatcher.tick(NOW)).flagged == 30
        first = [r.getMessage() for r in caplog.records]
        caplog.clear()
        assert await dispatcher.recheck_errors() == 30
        assert (await dispatcher.tick(NOW + timedelta(seconds=1))).flagged == 30
        again = [r.getMessage() for r in caplog.records]
    assert sum("cannot run" in m for m in first) == 20
    assert sum("30 schedules flagged" in m for m in first) == 1
    assert [m for m in again if "cannot run" in m] == []
    assert sum("30 schedules flagged" in m and "0 new" in m for m in again) == 1
