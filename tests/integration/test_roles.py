"""`scheduler db roles`: the beat, worker and history paths run under the least-privilege
roles it grants (real PostgreSQL roles, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from config.celery import app
from config.settings import Settings, get_settings
from scheduler import api
from scheduler.beat.dispatcher import Dispatcher
from scheduler.broker.publisher import Publisher
from scheduler.cli import main
from scheduler.runtime import db as scheduler_db
from scheduler.runtime.db import create_engine, session_factory
from tasks import demo
from tests.conftest import run_sync
from tests.support.procs import query
from tests.support.sqlhelp import sql

ROLES = ("beat", "worker", "operator", "readonly")


@pytest.fixture
def logins(database_url: str, broker_url: str) -> Iterator[dict[str, str]]:
    """A login user in each granted role; URLs by role. Roles and users dropped after."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    printed = CliRunner().invoke(main, ["db", "roles", "--prefix", prefix])
    assert printed.exit_code == 0
    assert f"GRANT SELECT ON schedules TO {prefix}readonly" in printed.output
    applied = CliRunner().invoke(main, ["db", "roles", "--apply", "--prefix", prefix])
    assert applied.exit_code == 0, applied.output
    users = {role: f"{prefix}{role}_login" for role in ROLES}
    for role, user in users.items():
        query(database_url, f"CREATE ROLE {user} LOGIN IN ROLE {prefix}{role}")
    try:
        yield {
            role: make_url(database_url).set(username=user).render_as_string(False)
            for role, user in users.items()
        }
    finally:
        scheduler_db.close_runtime()
        for role, user in users.items():
            query(database_url, f"DROP OWNED BY {user}, {prefix}{role}")
            query(database_url, f"DROP ROLE {user}")
            query(database_url, f"DROP ROLE {prefix}{role}")


def test_beat_worker_and_history_run_under_their_roles(
    logins: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds) VALUES ('r', 'demo.noop', 60)",
    )

    async def beat_pass() -> Any:
        engine = create_engine(logins["beat"])
        publisher = Publisher(app)
        try:
            dispatcher = Dispatcher(
                sessions=session_factory(engine),
                publisher=publisher,
                registered=frozenset({"demo.noop"}),
                settings=Settings(_env_file=None),  # type: ignore[call-arg]
            )
            await dispatcher.recheck_errors()
            result = await dispatcher.tick(datetime.now(UTC))
            denied = None
            try:
                await sql(engine, "SELECT password_hash FROM web_users")
            except DBAPIError as exc:
                denied = exc
            return result, denied
        finally:
            publisher.close()
            await engine.dispose()

    result, denied = run_sync(beat_pass())
    assert result.published == 1
    assert denied is not None
    assert "permission denied" in str(denied)

    queued = query(database_url, "SELECT id FROM executions")[0]["id"]
    monkeypatch.setenv("DATABASE_URL", logins["worker"])
    get_settings.cache_clear()
    scheduler_db.close_runtime()
    demo.noop.apply(task_id=str(queued))
    direct = demo.noop.apply()
    statuses = {
        str(r["id"]): r["status_id"]
        for r in query(database_url, "SELECT id, status_id FROM executions")
    }
    assert statuses[str(queued)] == statuses[direct.id]

    monkeypatch.setenv("DATABASE_URL", logins["readonly"])
    get_settings.cache_clear()
    scheduler_db.close_runtime()
    runs = api.history(schedule="r")
    assert [str(r["id"]) for r in runs] == [str(queued)]
    assert runs[0]["status"] == "success"
    assert CliRunner().invoke(main, ["history"]).exit_code == 0
    refused = CliRunner().invoke(main, ["schedules", "remove", "r", "--yes"])
    assert refused.exit_code == 2
    assert "permission denied" in refused.output
