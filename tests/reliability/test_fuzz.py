"""Fuzzed schedule rows inserted with raw SQL: the beat never crashes, bad rows get
last_error, good rows keep their timing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.celery import app
from config.settings import Settings
from scheduler.db import create_engine, session_factory
from scheduler.dispatcher import Dispatcher
from scheduler.publisher import Publisher
from tests.conftest import run_sync
from tests.reliability.conftest import LONG

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GOOD_TASKS = ["demo.noop", "demo.sleep"]
ACCEPTED_INSTANTS = ["2026-01-01 00:00+00", "9999-12-29 23:00+00", "0001-01-03 00:00+00"]
OPTIONS: list[dict[str, Any]] = [
    *({}, {"queue": "celery"}, {"priority": 9}, {"expires": 30}),
    *({"priority": "high"}, {"expires": 1e300}, {"headers": {"id": "x"}}, {"qeue": "typo"}),
]
"""Options the publisher sends, then options the beat must flag (each once failed a publish)."""
REFUSED_INSTANTS = ["infinity", "-infinity", "10000-01-01 00:00+00"]
"""Instants Python cannot hold: the database refuses them (the edges above are accepted)."""
names = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20).map(lambda t: t.replace("\x00", "")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).map(lambda t: t.replace("\x00", "")), inner, max_size=4
        )
    ),
    max_leaves=20,
)
rows = st.fixed_dictionaries(
    {
        "name": names,
        "task": st.sampled_from([*GOOD_TASKS, "not.registered", "", "demo.noop'; DROP TABLE x;--"]),
        "kind": st.sampled_from(["cron", "interval", "once"]),
        "cron": st.sampled_from(
            [
                "*/5 * * * *",
                "0 3 * * *",
                "61 * * * *",
                "* * *",
                "@daily",
                "@sometimes",
                "",
                "0 0 30 2 *",
                "*/10 * * * * *",
            ]
        ),
        "interval": st.sampled_from(
            ["0.0001", "0.001", "1", "3600", "315360000", "99999999999", "NaN", "Infinity"]
        ),
        "start_at": st.sampled_from([None, *ACCEPTED_INSTANTS, *REFUSED_INSTANTS]),
        "timezone": st.sampled_from(
            ["UTC", "Europe/London", "Mars/Olympus", "", "../../etc/passwd", "America/New_York"]
        ),
        "options": st.sampled_from(OPTIONS),
        "args": json_values,
        "kwargs": json_values,
        "big": st.booleans(),
    }
)


async def _insert_and_tick(url: str, generated: list[dict[str, Any]]) -> tuple[list[Any], int]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("TRUNCATE executions, schedules")
        for i, row in enumerate(generated):
            kwargs = {"blob": "x" * 1_200_000} if row["big"] else row["kwargs"]
            try:
                await conn.execute(
                    "INSERT INTO schedules (name, task, cron, interval_seconds, run_at, timezone, "
                    "args, kwargs, start_at, options) VALUES "
                    "($1, $2, $3, $4::numeric, $5, $6, $7::jsonb, $8::jsonb, $9::text::timestamptz, "
                    "$10::jsonb)",
                    f"{i}-{row['name']}",
                    row["task"],
                    row["cron"] if row["kind"] == "cron" else None,
                    row["interval"] if row["kind"] == "interval" else None,
                    NOW - timedelta(seconds=5) if row["kind"] == "once" else None,
                    row["timezone"],
                    json.dumps(row["args"]),
                    json.dumps(kwargs),
                    row["start_at"],
                    json.dumps(row["options"]),
                )
            except asyncpg.CheckViolationError:
                if row["start_at"] not in REFUSED_INSTANTS:
                    raise
        engine = create_engine(url)
        publisher = Publisher(app)
        try:
            dispatcher = Dispatcher(
                sessions=session_factory(engine),
                publisher=publisher,
                registered=frozenset(GOOD_TASKS),
                settings=Settings(_env_file=None),  # type: ignore[call-arg]
            )
            await dispatcher.run_once(NOW)
            again = await dispatcher.tick(NOW + timedelta(milliseconds=1))
        finally:
            publisher.close()
            await engine.dispose()
        result = await conn.fetch(
            "SELECT name, task, cron, interval_seconds, timezone, args, kwargs, options, last_error, "
            "next_run_at, enabled "
            "FROM schedules ORDER BY name"
        )
        return list(result), again.locked
    finally:
        await conn.close()


def _valid(row: Any) -> bool:
    from scheduler.cron import make_timing
    from scheduler.exceptions import InvalidScheduleError
    from scheduler.options import check_options

    if row["task"] not in GOOD_TASKS or not isinstance(json.loads(row["args"]), list):
        return False
    try:
        check_options(json.loads(row["options"]))
        make_timing(
            cron=row["cron"],
            interval_seconds=row["interval_seconds"],
            run_at=None if row["cron"] or row["interval_seconds"] else NOW,
            timezone=row["timezone"],
        )
    except InvalidScheduleError:
        return False
    return True


@settings(
    max_examples=200 if LONG else 15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(generated=st.lists(rows, min_size=1, max_size=8))
def test_fuzzed_rows_never_crash_the_beat(
    database_url: str, broker_url: str, generated: list[dict[str, Any]]
) -> None:
    result, relocked = run_sync(_insert_and_tick(database_url, generated))
    assert relocked == 0, "flagged rows must not be picked again until edited"
    for row in result:
        if row["last_error"] is not None:
            assert row["next_run_at"] is None
            assert "\n" not in row["last_error"]
        elif row["enabled"]:
            assert row["next_run_at"] is not None, dict(row)
            assert row["next_run_at"] > NOW - timedelta(seconds=1)
        if not _valid(row):
            assert row["last_error"] is not None or not row["enabled"], dict(row)
        if len(row["kwargs"]) > 1_000_000:
            assert row["last_error"] is not None, row["name"]
