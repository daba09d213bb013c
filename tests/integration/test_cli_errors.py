"""Environment errors from the CLI: unreachable database, database without the schema.
Each is one line naming the fix, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import get_settings
from scheduler.cli import main
from scheduler.cli.common import explain
from scheduler.runtime.db import close_runtime
from scheduler.runtime.retry import sqlstate
from tests.support.cli import one_error_line


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    close_runtime()
    get_settings.cache_clear()


def test_unreachable_database(point_at: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://nobody:x@127.0.0.1:1/nowhere")
    get_settings.cache_clear()
    runner = CliRunner()
    for args in (["schedules", "list"], ["history"], ["stats"], ["export"]):
        line = one_error_line(runner.invoke(main, args))
        assert "cannot reach the database" in line
        assert "DATABASE_URL" in line


def test_database_without_schema(empty_database_url: str) -> None:
    for args in (["schedules", "list"], ["history"], ["export"]):
        line = one_error_line(CliRunner().invoke(main, args))
        assert line == "error: the database has no schema: run `scheduler db upgrade`", line


async def test_database_errors_are_told_apart_by_their_sqlstate(engine: AsyncEngine) -> None:
    async def error_of(statement: str) -> BaseException:
        with pytest.raises(DBAPIError) as caught:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        return caught.value

    bad_value = await error_of("SELECT 'x'::int")
    assert sqlstate(bad_value) == "22P02"
    assert explain(bad_value) == (
        'the database refused a value: invalid input syntax for type integer: "x"'
    )
    missing = await error_of("SELECT * FROM no_such_table")
    assert sqlstate(missing) == "42P01"
    assert explain(missing) == "the database has no schema: run `scheduler db upgrade`"
    taken = await error_of("INSERT INTO execution_statuses SELECT * FROM execution_statuses")
    assert sqlstate(taken) == "23505"
    assert explain(taken).startswith("the database refused a value: duplicate key value")
    # the words of a message decide nothing: a plain error mentioning a relation stays itself
    assert explain(RuntimeError('relation "x" does not exist')) == (
        'RuntimeError: relation "x" does not exist'
    )
