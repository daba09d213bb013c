"""Services, schema checks and configuration errors: one line, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.settings import get_settings
from scheduler.cli import main
from scheduler.runtime.db import close_runtime
from scheduler.runtime.embedded import EmbeddedServices


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _one_line_error(result: object) -> str:
    output: str = result.output  # type: ignore[attr-defined]
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in output
    return lines[0]


def test_db_current_reports_head(runner: CliRunner, database_url: str) -> None:
    result = runner.invoke(main, ["db", "current", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["up_to_date"] is True


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("mysql://root@localhost/app", "DATABASE_URL must be a PostgreSQL URL"),
        ("postgresql://postgres@127.0.0.1:9/nowhere", "cannot reach the database"),
    ],
    ids=["wrong-scheme", "unreachable"],
)
def test_a_bad_database_url_is_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, url: str, error: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        result = runner.invoke(main, ["db", "current"])
    finally:
        get_settings.cache_clear()
        close_runtime()
    assert result.exit_code == 2
    assert error in _one_line_error(result)


def test_missing_migrations_are_one_line(runner: CliRunner, empty_database_url: str) -> None:
    result = runner.invoke(main, ["beat"])
    assert result.exit_code == 2
    assert "run `scheduler db upgrade`" in _one_line_error(result)


def test_db_upgrade_and_downgrade_via_cli(runner: CliRunner, empty_database_url: str) -> None:
    up = runner.invoke(main, ["db", "upgrade"])
    assert up.exit_code == 0, up.output
    down = runner.invoke(main, ["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    current = runner.invoke(main, ["db", "current", "--json"])
    assert json.loads(current.output)["current"] is None


def test_debug_flag_shows_the_traceback(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere"}
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "--debug", "db", "current"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_embedded_services_are_shared_and_reused(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    first = EmbeddedServices(tmp_path / "state", durable=False)
    try:
        urls = first.up()
        state = json.loads((tmp_path / "state" / "services.json").read_text())
        assert state["database_url"] == urls.database_url
        assert state["broker_url"] == urls.broker_url
        # a second process (here: a second handle) reuses the running servers
        again = EmbeddedServices(tmp_path / "state", durable=False).up()
        assert again == urls
        status = first.status()
        assert status["postgres"]["running"]
        assert status["redis"]["running"]
        # they answer queries
        assert first.postgres.psql("SELECT 40 + 2").strip() == "42"
    finally:
        first.down()
    status = first.status()
    assert not status["postgres"]["running"]
    assert not status["redis"]["running"]
    # restart after stop: same URLs, data kept
    try:
        assert EmbeddedServices(tmp_path / "state", durable=False).up() == urls
    finally:
        first.down()
