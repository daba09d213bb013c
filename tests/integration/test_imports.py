"""Imports from Celery's beat_schedule, RedBeat and django-celery-beat, with what cannot map."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab
from click.testing import CliRunner

from scheduler.cli import main
from scheduler.core.cron import next_fire_times
from tests.conftest import SessionServices
from tests.support.procs import query


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_import_celery_beat_schedule(database_url: str, broker_url: str) -> None:
    dry = invoke(
        "import",
        "celery",
        "tests.integration.beat_schedule_app:legacy",
        "--dry-run",
        "--allow-partial",
        "--json",
    )
    assert sorted(dry["created"]) == ["every-30s", "first-monday", "office-hours", "plain-number"]
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0
    refused = CliRunner().invoke(
        main, ["import", "celery", "tests.integration.beat_schedule_app:legacy"]
    )
    assert refused.exit_code == 2
    assert "error: 2 of 6 entries cannot be imported" in refused.output
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0
    out = invoke(
        "import",
        "celery",
        "tests.integration.beat_schedule_app:legacy",
        "--allow-partial",
        "--json",
    )
    reasons = {u["name"]: u["reason"] for u in out["unmapped"]}
    assert "unsupported schedule type FullMoon" in reasons["at-full-moon"]
    assert "not registered" in reasons["not-registered"]
    rows = {r["name"]: r for r in query(database_url, "SELECT * FROM schedules")}
    assert rows["office-hours"]["cron"] == "*/15 9-17 * * mon-fri"
    assert rows["office-hours"]["timezone"] == "Europe/Berlin"
    assert rows["every-30s"]["interval_seconds"] == 30
    assert json.loads(rows["every-30s"]["args"]) == [0.1]
    assert json.loads(rows["every-30s"]["options"]) == {
        "queue": "slow",
        "expires": 60,
        "headers": {"tenant": "acme"},
    }
    assert (rows["first-monday"]["cron"], rows["first-monday"]["day_match"]) == (
        "0 9 1-7 * mon",
        "all",
    )
    assert rows["office-hours"]["day_match"] == "all"
    notes = {n["name"]: n["note"] for n in out["notes"]}
    assert notes == {
        "every-30s": "not carried: headers task (reserved by Celery's protocol); "
        "option routing_key (no equivalent here: runs go to the schedule's queue)"
    }
    again = invoke(
        "import",
        "celery",
        "tests.integration.beat_schedule_app:legacy",
        "--allow-partial",
        "--json",
    )
    assert sorted(again["unchanged"]) == sorted(dry["created"])
    assert again["differing"] == []
    query(database_url, "UPDATE schedules SET cron = '0 0 * * *' WHERE name = 'office-hours'")
    differs = invoke(
        "import",
        "celery",
        "tests.integration.beat_schedule_app:legacy",
        "--allow-partial",
        "--json",
    )
    assert differs["differing"] == ["office-hours"]
    assert sorted(differs["unchanged"]) == ["every-30s", "first-monday", "plain-number"]
    updated = invoke(
        "import",
        "celery",
        "tests.integration.beat_schedule_app:legacy",
        "--update",
        "--allow-partial",
        "--json",
    )
    assert updated["updated"] == ["office-hours"]
    assert sorted(updated["unchanged"]) == ["every-30s", "first-monday", "plain-number"]
    [row] = query(database_url, "SELECT cron FROM schedules WHERE name = 'office-hours'")
    assert row["cron"] == "*/15 9-17 * * mon-fri"


def test_import_redbeat_entries(database_url: str, broker_url: str) -> None:
    from redbeat.schedulers import RedBeatSchedulerEntry

    app = Celery("redbeat-user", broker=broker_url, set_as_current=False)
    app.conf.redbeat_redis_url = broker_url
    RedBeatSchedulerEntry("rb-cron", "demo.noop", crontab(minute="5", hour="*/2"), app=app).save()
    RedBeatSchedulerEntry(
        "rb-every", "demo.sleep", timedelta(minutes=5), args=[1], kwargs={}, app=app
    ).save()
    RedBeatSchedulerEntry("rb-gone", "legacy.gone", timedelta(minutes=5), app=app).save()
    RedBeatSchedulerEntry(
        "rb-first-monday",
        "demo.noop",
        crontab(minute="0", hour="9", day_of_month="1-7", day_of_week="mon"),
        options={"headers": {"tenant": "acme", "eta": "x"}, "exchange": "e"},
        app=app,
    ).save()
    out = invoke("import", "redbeat", "--redis", broker_url, "--allow-partial", "--json")
    assert sorted(out["created"]) == ["rb-cron", "rb-every", "rb-first-monday"]
    notes = {n["name"]: n["note"] for n in out["notes"]}
    assert notes == {
        "rb-first-monday": "not carried: headers eta (reserved by Celery's protocol); "
        "option exchange (no equivalent here: runs go to the schedule's queue)"
    }
    assert [u["name"] for u in out["unmapped"]] == ["rb-gone"]
    rows = {
        r["name"]: r
        for r in query(
            database_url, "SELECT name, cron, interval_seconds, day_match, options FROM schedules"
        )
    }
    assert rows["rb-cron"]["cron"] == "5 */2 * * *"
    assert (rows["rb-first-monday"]["cron"], rows["rb-first-monday"]["day_match"]) == (
        "0 9 1-7 * mon",
        "all",
    )
    assert json.loads(rows["rb-first-monday"]["options"]) == {"headers": {"tenant": "acme"}}
    assert rows["rb-every"]["interval_seconds"] == 300


@pytest.fixture
def django_database(services: SessionServices) -> Any:
    """A database made by Django's own migrations, entries made by django-celery-beat's ORM."""
    name = services.create_database(from_template=False)
    url = services.url_for(name)
    made = subprocess.run(
        [sys.executable, "-m", "tests.integration.django_beat_project", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    yield url
    services.drop_database(name)


def test_import_django_celery_beat(
    database_url: str, broker_url: str, django_database: str
) -> None:
    args = ("import", "django-celery-beat", "--database-url", django_database, "--json")
    refused = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert refused.exit_code == 2
    assert refused.output.splitlines()[-1] == (
        "error: 2 of 6 entries cannot be imported, so nothing was written: "
        "fix them, or pass --allow-partial to import the rest"
    )
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0
    out = invoke(*args, "--allow-partial")
    assert sorted(out["created"]) == ["first-monday", "new-year", "nightly", "ten-minutes"]
    reasons = {u["name"]: u["reason"] for u in out["unmapped"]}
    assert set(reasons) == {"sunset", "broken-json"}
    assert [s["name"] for s in out["skipped"]] == ["celery.backend_cleanup"]
    notes = {n["name"]: n["note"] for n in out["notes"]}
    assert set(notes) == {"first-monday"}
    assert "headers id, retries (reserved by Celery's protocol)" in notes["first-monday"]
    assert "option exchange, routing_key" in notes["first-monday"]
    rows = {r["name"]: r for r in query(database_url, "SELECT * FROM schedules")}
    monday = rows["first-monday"]
    assert (monday["cron"], monday["day_match"]) == ("0 9 1-7 * mon", "all")
    assert monday["timezone"] == "Europe/Berlin"
    assert monday["description"] == "from django"
    assert json.loads(monday["options"]) == {
        "queue": "slow",
        "expires": 300,
        "headers": {"tenant": "acme"},
    }
    assert rows["nightly"]["cron"] == "0 4 * * *"
    assert rows["nightly"]["timezone"] == "America/New_York"
    assert rows["ten-minutes"]["interval_seconds"] == 600
    assert rows["ten-minutes"]["enabled"] is False
    assert json.loads(rows["ten-minutes"]["options"]) == {"priority": 5}
    assert rows["new-year"]["run_at"] is not None
    # the first Monday of each month, 12 times a year, as Celery meant it
    times = next_fire_times(
        "0 9 1-7 * mon", "Europe/Berlin", datetime(2027, 1, 1, tzinfo=UTC), 12, day_match="all"
    )
    assert all(t.astimezone(ZoneInfo("Europe/Berlin")).day <= 7 for t in times)
    assert len({t.month for t in times}) == 12
    shown = CliRunner().invoke(main, ["schedules", "show", "first-monday"])
    assert "day_match: all" in shown.output
    assert "both the day of month and the day of week must match" in shown.output
    again = invoke(*args, "--allow-partial")
    assert again["created"] == []
    assert sorted(again["unchanged"]) == ["first-monday", "new-year", "nightly", "ten-minutes"]
    assert again["differing"] == []
    query(database_url, "UPDATE schedules SET cron = '0 5 * * *' WHERE name = 'nightly'")
    third = CliRunner().invoke(main, [*args[:-1], "--allow-partial"], catch_exceptions=False)
    assert "= first-monday (exists, unchanged)" in third.output
    assert "* nightly (exists, differs; --update to overwrite)" in third.output
    assert "unchanged 3, differing 1, refused 2" in third.output


def test_import_errors_are_one_line(database_url: str, broker_url: str) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["import", "celery", "no.such.module:app"])
    assert bad.exit_code == 2
    assert "cannot import" in bad.output
    empty = runner.invoke(main, ["import", "django-celery-beat", "--database-url", database_url])
    assert empty.exit_code == 2
    assert "no django_celery_beat tables in the database of --database-url" in empty.output
    blank = runner.invoke(main, ["import", "django-celery-beat", "--database-url", ""])
    assert blank.exit_code == 2
    assert blank.output.strip() == (
        "error: --database-url is empty: give the Django project's PostgreSQL URL"
    )
    down = runner.invoke(
        main, ["import", "django-celery-beat", "--database-url", "postgresql://u@127.0.0.1:1/x"]
    )
    assert down.exit_code == 2
    assert len(down.output.strip().splitlines()) == 1
    assert "cannot reach the database of --database-url" in down.output
    assert "DATABASE_URL" not in down.output.replace("--database-url", "")
