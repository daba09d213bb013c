"""Imports from Celery's beat_schedule, RedBeat and django-celery-beat, with what cannot map."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.schedules import crontab
from click.testing import CliRunner

from scheduler.cli import main
from tests.acceptance.procs import query
from tests.conftest import SessionServices


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_import_celery_beat_schedule(database_url: str, broker_url: str) -> None:
    dry = invoke(
        "import", "celery", "tests.integration.beat_schedule_app:legacy", "--dry-run", "--json"
    )
    assert sorted(dry["created"]) == ["every-30s", "office-hours", "plain-number"]
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0
    out = invoke("import", "celery", "tests.integration.beat_schedule_app:legacy", "--json")
    reasons = {u["name"]: u["reason"] for u in out["unmapped"]}
    assert "unsupported schedule type FullMoon" in reasons["at-full-moon"]
    assert "not registered" in reasons["not-registered"]
    rows = {r["name"]: r for r in query(database_url, "SELECT * FROM schedules")}
    assert rows["office-hours"]["cron"] == "*/15 9-17 * * mon-fri"
    assert rows["office-hours"]["timezone"] == "Europe/Berlin"
    assert rows["every-30s"]["interval_seconds"] == 30
    assert json.loads(rows["every-30s"]["args"]) == [0.1]
    assert json.loads(rows["every-30s"]["options"]) == {"queue": "slow", "expires": 60}
    again = invoke("import", "celery", "tests.integration.beat_schedule_app:legacy", "--json")
    assert sorted(again["existing"]) == ["every-30s", "office-hours", "plain-number"]
    query(database_url, "UPDATE schedules SET cron = '0 0 * * *' WHERE name = 'office-hours'")
    updated = invoke(
        "import", "celery", "tests.integration.beat_schedule_app:legacy", "--update", "--json"
    )
    assert updated["updated"] == ["office-hours"]
    assert sorted(updated["existing"]) == ["every-30s", "plain-number"]
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
    out = invoke("import", "redbeat", "--redis", broker_url, "--json")
    assert sorted(out["created"]) == ["rb-cron", "rb-every"]
    assert [u["name"] for u in out["unmapped"]] == ["rb-gone"]
    rows = {
        r["name"]: r
        for r in query(database_url, "SELECT name, cron, interval_seconds FROM schedules")
    }
    assert rows["rb-cron"]["cron"] == "5 */2 * * *"
    assert rows["rb-every"]["interval_seconds"] == 300


DJANGO_TABLES = """
CREATE TABLE django_celery_beat_crontabschedule (id serial PRIMARY KEY, minute varchar(240),
  hour varchar(96), day_of_week varchar(64), day_of_month varchar(124), month_of_year varchar(64),
  timezone varchar(63));
CREATE TABLE django_celery_beat_intervalschedule (id serial PRIMARY KEY, every integer,
  period varchar(24));
CREATE TABLE django_celery_beat_clockedschedule (id serial PRIMARY KEY, clocked_time timestamptz);
CREATE TABLE django_celery_beat_solarschedule (id serial PRIMARY KEY, event varchar(24),
  latitude numeric, longitude numeric);
CREATE TABLE django_celery_beat_periodictask (id serial PRIMARY KEY, name varchar(200) UNIQUE,
  task varchar(200), args text, kwargs text, queue varchar(200), exchange varchar(200),
  routing_key varchar(200), expires timestamptz, enabled boolean, last_run_at timestamptz,
  total_run_count integer, date_changed timestamptz, description text,
  crontab_id integer, interval_id integer, solar_id integer, one_off boolean,
  start_time timestamptz, priority integer, headers text, clocked_id integer,
  expire_seconds integer);
INSERT INTO django_celery_beat_crontabschedule VALUES (1, '0', '4', '*', '*', '*', 'America/New_York');
INSERT INTO django_celery_beat_intervalschedule VALUES (1, 10, 'minutes');
INSERT INTO django_celery_beat_clockedschedule VALUES (1, '2030-01-01T00:00:00Z');
INSERT INTO django_celery_beat_solarschedule VALUES (1, 'sunset', 52.5, 13.4);
INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, queue, enabled, crontab_id,
  interval_id, solar_id, clocked_id, one_off, description, priority) VALUES
  ('nightly', 'demo.noop', '[]', '{}', NULL, true, 1, NULL, NULL, NULL, false, 'from django', NULL),
  ('ten-minutes', 'demo.sleep', '[0.5]', '{}', 'slow', false, NULL, 1, NULL, NULL, false, '', 5),
  ('new-year', 'demo.noop', '[]', '{}', NULL, true, NULL, NULL, NULL, 1, true, '', NULL),
  ('sunset', 'demo.noop', '[]', '{}', NULL, true, NULL, NULL, 1, NULL, false, '', NULL),
  ('broken-json', 'demo.noop', '[oops', '{}', NULL, true, NULL, 1, NULL, NULL, false, '', NULL),
  ('celery.backend_cleanup', 'celery.backend_cleanup', '[]', '{}', NULL, true, 1, NULL, NULL, NULL, false, '', NULL);
"""


@pytest.fixture
def django_database(services: SessionServices) -> Any:
    name = services.create_database(from_template=False)
    url = services.url_for(name)
    for statement in DJANGO_TABLES.split(";"):
        if statement.strip():
            query(url, statement)
    yield url
    services.drop_database(name)


def test_import_django_celery_beat(
    database_url: str, broker_url: str, django_database: str
) -> None:
    out = invoke("import", "django-celery-beat", "--database-url", django_database, "--json")
    assert sorted(out["created"]) == ["new-year", "nightly", "ten-minutes"]
    reasons = {u["name"]: u["reason"] for u in out["unmapped"]}
    assert set(reasons) == {"sunset", "broken-json", "celery.backend_cleanup"}
    rows = {r["name"]: r for r in query(database_url, "SELECT * FROM schedules")}
    assert rows["nightly"]["cron"] == "0 4 * * *"
    assert rows["nightly"]["timezone"] == "America/New_York"
    assert rows["nightly"]["description"] == "from django"
    assert rows["ten-minutes"]["interval_seconds"] == 600
    assert rows["ten-minutes"]["enabled"] is False
    assert json.loads(rows["ten-minutes"]["options"]) == {"queue": "slow", "priority": 5}
    assert rows["new-year"]["run_at"] is not None


def test_import_errors_are_one_line(database_url: str, broker_url: str) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["import", "celery", "no.such.module:app"])
    assert bad.exit_code == 2
    assert "cannot import" in bad.output
    empty = runner.invoke(main, ["import", "django-celery-beat", "--database-url", database_url])
    assert empty.exit_code == 2
    assert "no django_celery_beat tables" in empty.output
