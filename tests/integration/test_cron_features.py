"""Cron rules end to end on a real database: raw rows the beat refuses, H and day_match in
the beat's plan, and the CLI's `next`, `schedules add/show/list` texts and errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.beat.dispatcher import Dispatcher
from scheduler.cli import main
from scheduler.core.cron import next_fire_times
from tests.support.sqlhelp import sql

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_raw_rows_with_crons_that_cannot_run_get_last_error(
    engine: AsyncEngine, dispatcher: Dispatcher
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron) VALUES "
        "('feb-30', 'demo.noop', '0 0 30 2 *'), ('reversed', 'demo.noop', '0 5-1 * * *'), "
        "('random', 'demo.noop', 'R * * * *'), ('year', 'demo.noop', '0 0 1 1 * 2027'), "
        "('fine', 'demo.noop', '0 0 L * *')",
    )
    result = await dispatcher.tick(NOW)
    assert result.flagged == 4
    rows = {
        r["name"]: r
        for r in await sql(engine, "SELECT name, last_error, next_run_at FROM schedules")
    }
    assert "never fires: February has no 30th" in str(rows["feb-30"]["last_error"])
    assert "reversed range 5-1" in str(rows["reversed"]["last_error"])
    assert "R (random) is not supported" in str(rows["random"]["last_error"])
    assert "year fields are not supported" in str(rows["year"]["last_error"])
    for row in rows.values():
        assert "croniter" not in str(row["last_error"]).lower()
    assert rows["fine"]["last_error"] is None
    assert rows["fine"]["next_run_at"] == datetime(2026, 12, 31, tzinfo=UTC)


async def test_beat_plans_h_from_the_name_and_day_match_all(
    engine: AsyncEngine, dispatcher: Dispatcher
) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron, day_match) VALUES "
        "('hashed-a', 'demo.noop', 'H H * * *', 'any'), "
        "('hashed-b', 'demo.noop', 'H H * * *', 'any'), "
        "('first-monday', 'demo.noop', '0 9 1-7 * mon', 'all'), "
        "('posix', 'demo.noop', '0 9 1-7 * mon', 'any')",
    )
    await dispatcher.tick(NOW)
    rows = {r["name"]: r for r in await sql(engine, "SELECT name, next_run_at FROM schedules")}
    for name in ("hashed-a", "hashed-b"):
        expected = next_fire_times("H H * * *", "UTC", NOW, 1, name=name)[0]
        assert rows[name]["next_run_at"] == expected
    assert rows["hashed-a"]["next_run_at"] != rows["hashed-b"]["next_run_at"]
    assert rows["first-monday"]["next_run_at"] == datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert rows["posix"]["next_run_at"] == datetime(2026, 12, 2, 9, tzinfo=UTC)
    with pytest.raises(Exception, match="day_match"):
        await sql(engine, "UPDATE schedules SET day_match = 'some' WHERE name = 'posix'")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_next_describes_and_takes_name_and_day_match(database_url: str) -> None:
    out = run("next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--after", "2026-12-01")
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[:3] == [
        "At 02:30",
        "  DST 2027-03-28: 02:30 does not exist; fires at 03:00",
        "  DST 2027-10-31: 02:30 occurs twice; fires once (the first, +0200)",
    ]
    hashed = run("next", "--cron", "H * * * *", "--name", "job-7", "--after", "2026-12-01T00:00Z")
    assert hashed.output.splitlines()[1].startswith("2026-12-01T00:33:00+00:00")
    assert "give the name (--name)" in error_line(run("next", "--cron", "H * * * *"))
    monday = json.loads(
        run(
            "next", "--cron", "0 0 1-7 * mon", "--day-match", "all", "--after", "2026-12-01",
            "-n", "2", "--json",
        ).output
    )  # fmt: skip
    assert [m["utc"] for m in monday] == ["2026-12-07T00:00:00+00:00", "2027-01-04T00:00:00+00:00"]
    line = error_line(run("next", "--cron", "0 0 30 2 *"))
    assert line == (
        "error: invalid cron expression '0 0 30 2 *': never fires: February has no 30th"
    )


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("* * 31 4 *", "never fires: April has no 31st"),
        ("0 5-1 * * *", "reversed range 5-1"),
        ("R * * * *", "R (random) is not supported"),
        ("0 0 1 1 * 2027", "year fields are not supported"),
    ],
)
def test_schedules_add_refuses_in_one_line(database_url: str, cron: str, reason: str) -> None:
    line = error_line(run("schedules", "add", "x", "--task", "demo.noop", "--cron", cron))
    assert reason in line
    assert "croniter" not in line.lower()


def test_show_and_list_describe_schedules(database_url: str) -> None:
    for args in (
        ("report", "--cron", "30 2 * * *", "--tz", "Europe/Berlin"),
        ("monthly", "--cron", "0 9 1-7 * mon", "--day-match", "all"),
        ("hashed", "--cron", "H 3 * * *"),
        ("often", "--every", "90s"),
    ):
        added = run("schedules", "add", args[0], "--task", "demo.noop", *args[1:])
        assert added.exit_code == 0, added.output
    shown = run("schedules", "show", "report").output
    assert "means: At 02:30" in shown
    assert "day_match: any" in shown
    assert "does not exist; fires at 03:00" in shown
    monthly = run("schedules", "show", "monthly").output
    assert "day_match: all" in monthly
    assert "both the day of month and the day of week must match" in monthly
    listed: list[dict[str, Any]] = json.loads(run("schedules", "list", "--json").output)
    by_name = {item["name"]: item for item in listed}
    assert by_name["often"]["summary"] == "every 1 minute 30 seconds"
    assert by_name["monthly"]["day_match"] == "all"
    hashed_minute = next_fire_times("H 3 * * *", "UTC", NOW, 1, name="hashed")[0].minute
    assert by_name["hashed"]["summary"] == f"At 03:{hashed_minute:02d}"
    assert any("does not exist" in note for note in by_name["report"]["dst_notes"])
    table = run("schedules", "list").output
    assert "MEANING" in table
    assert "every 1 minute 30 seconds" in table
