"""The app's static beat_schedule is loaded into `schedules` (origin config) at beat start."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.schedules import crontab
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.beat import config_sync
from tests.support.procs import query

REGISTERED = frozenset({"demo.noop", "demo.sleep"})


def legacy_app(entries: dict[str, dict[str, object]]) -> Celery:
    app = Celery("legacy-sync", set_as_current=False)
    app.conf.timezone = "Europe/Berlin"
    app.conf.beat_schedule = entries
    return app


async def q(session: AsyncSession, sql: str) -> list[dict[str, Any]]:
    async with session.begin():
        result = await session.execute(text(sql))
        if not sql.lstrip().upper().startswith("SELECT"):
            return []
        return [dict(r) for r in result.mappings()]


async def sync(session: AsyncSession, app: Celery) -> config_sync.SyncReport:
    async with session.begin():
        return await config_sync.sync_app(session, app, REGISTERED)


async def test_beat_schedule_is_synced_and_user_rows_are_never_touched(
    database_url: str, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    await q(
        session,
        "INSERT INTO schedules (name, task, cron) VALUES ('mine', 'demo.noop', '@daily'), "
        "('taken', 'demo.noop', '@hourly')",
    )
    app = legacy_app(
        {
            "office-hours": {"task": "demo.noop", "schedule": crontab(minute="*/15", hour="9-17")},
            "every-30s": {"task": "demo.sleep", "schedule": timedelta(seconds=30), "args": (0.1,)},
            "taken": {"task": "demo.sleep", "schedule": 10.0},
            "unregistered": {"task": "legacy.gone", "schedule": 10.0},
        }
    )
    with caplog.at_level(logging.INFO, logger="scheduler.beat.config_sync"):
        first = await sync(session, app)
    assert sorted(first.created) == ["every-30s", "office-hours"]
    assert first.taken == ("taken",)
    assert [name for name, _ in first.invalid] == ["unregistered"]
    [line] = [r.getMessage() for r in caplog.records if r.name == "scheduler.beat.config_sync"]
    assert "2 created, 0 updated, 0 removed, 0 unchanged" in line
    assert "taken" in line
    assert "unregistered" in line
    rows = {r["name"]: r for r in await q(session, "SELECT * FROM schedules")}
    assert rows["office-hours"]["origin"] == "config"
    assert rows["office-hours"]["cron"] == "*/15 9-17 * * *"
    assert rows["office-hours"]["timezone"] == "Europe/Berlin"
    assert rows["every-30s"]["args"] == [0.1]
    assert rows["mine"]["origin"] == "user"
    assert rows["taken"]["origin"] == "user"
    assert rows["taken"]["task"] == "demo.noop"  # the user's row, untouched

    again = await sync(session, app)
    assert sorted(again.unchanged) == ["every-30s", "office-hours"]
    assert again.created == again.updated == again.removed == ()

    app.conf.beat_schedule = {
        "office-hours": {"task": "demo.noop", "schedule": crontab(minute="0", hour="9")},
    }
    changed = await sync(session, app)
    assert changed.updated == ("office-hours",)
    assert changed.removed == ("every-30s",)
    names = {r["name"]: r for r in await q(session, "SELECT name, cron, origin FROM schedules")}
    assert set(names) == {"office-hours", "mine", "taken"}
    assert names["office-hours"]["cron"] == "0 9 * * *"

    app.conf.beat_schedule = {}
    emptied = await sync(session, app)
    assert emptied.removed == ("office-hours",)
    left = await q(session, "SELECT name, origin FROM schedules ORDER BY name")
    assert left == [{"name": "mine", "origin": "user"}, {"name": "taken", "origin": "user"}]


async def test_an_entry_that_became_invalid_keeps_its_row(
    database_url: str, session: AsyncSession
) -> None:
    app = legacy_app({"nightly": {"task": "demo.noop", "schedule": crontab(minute="0", hour="3")}})
    await sync(session, app)
    app.conf.beat_schedule = {"nightly": {"task": "legacy.renamed", "schedule": 60.0}}
    report = await sync(session, app)
    assert report.removed == ()
    assert [name for name, _ in report.invalid] == ["nightly"]
    [row] = await q(session, "SELECT task, cron, origin FROM schedules")
    assert row == {"task": "demo.noop", "cron": "0 3 * * *", "origin": "config"}


def test_apply_prune_leaves_config_rows(database_url: str, tmp_path: object) -> None:
    from pathlib import Path

    from click.testing import CliRunner

    from scheduler.cli import main

    query(
        database_url,
        "INSERT INTO schedules (name, task, cron, origin) VALUES "
        "('from-config', 'demo.noop', '@daily', 'config'), ('old', 'demo.noop', '@daily', 'user')",
    )
    path = Path(str(tmp_path)) / "s.yaml"
    path.write_text("schedules:\n  - name: new\n    task: demo.noop\n    cron: '@hourly'\n")
    result = CliRunner().invoke(main, ["apply", str(path), "--prune"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = [r["name"] for r in query(database_url, "SELECT name FROM schedules ORDER BY name")]
    assert names == ["from-config", "new"]
