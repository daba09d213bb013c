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
from scheduler.beat.dispatcher import Dispatcher
from scheduler.broker.publisher import Publisher
from scheduler.core.bounds import SANITISED_MARK
from scheduler.runtime.db import create_engine, session_factory
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
) | st.sampled_from(["[prod] x", "[/]", "\x1b[31mred\x1b[0m", "a\x07b", "[bold]"])
"""PostgreSQL text holds no NUL and no lone surrogate; markup and ANSI escapes it does."""
HOSTILE_TEXT = st.text(max_size=30) | st.sampled_from(
    ["\x00", "a\ud800b", "\udfff", "[/]", "[red]x", "\x1b[2J\x1b]0;t\x07"]
)
DEEP_KWARGS = '{"a": ' * 3000 + "1" + "}" * 3000
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
        "big": st.sampled_from(["", "", "huge", "deep"]),
    }
)


async def _insert_and_tick(url: str, generated: list[dict[str, Any]]) -> tuple[list[Any], int]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("TRUNCATE executions, schedules")
        for i, row in enumerate(generated):
            kwargs = {"blob": "x" * 1_200_000} if row["big"] == "huge" else row["kwargs"]
            kwargs_json = DEEP_KWARGS if row["big"] == "deep" else json.dumps(kwargs)
            if row["big"]:
                # refused at the door, so written as a row from before the bound would be
                try:
                    await conn.execute(
                        "INSERT INTO schedules (name, task, cron, kwargs) "
                        "VALUES ('refused', 'demo.noop', '@daily', $1::jsonb)",
                        kwargs_json,
                    )
                    raise AssertionError("the database took a definition past its bounds")
                except asyncpg.CheckViolationError:
                    pass
                await conn.execute(
                    "ALTER TABLE schedules DISABLE TRIGGER schedules_definition_bounds"
                )
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
                    kwargs_json,
                    row["start_at"],
                    json.dumps(row["options"]),
                )
            except asyncpg.CheckViolationError:
                if row["start_at"] not in REFUSED_INSTANTS:
                    raise
            finally:
                if row["big"]:
                    await conn.execute(
                        "ALTER TABLE schedules ENABLE TRIGGER schedules_definition_bounds"
                    )
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
    from scheduler.core.cron import make_timing
    from scheduler.core.exceptions import InvalidScheduleError
    from scheduler.core.options import check_options

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
        if len(row["kwargs"]) > 1_000_000 or row["kwargs"].startswith('{"a": {"a": {"a"'):
            assert row["last_error"] is not None, row["name"]


@settings(
    max_examples=100 if LONG else 10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=HOSTILE_TEXT)
def test_fuzzed_outcome_texts_are_always_recorded(database_url: str, text: str) -> None:
    """Whatever a result or an error holds, the run ends recorded, never left running."""
    from tests.support.hostile_tasks import echo, raise_
    from tests.support.rows import execution

    for task in (echo, raise_):
        record = execution(task.apply(kwargs={"text": text}).id)
        assert record["status"] in ("success", "failed"), record
        stored = record["result_summary"] or record["error_message"] or ""
        if text and ("\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)):
            assert stored.endswith(SANITISED_MARK)


_bodies = st.one_of(
    st.binary(max_size=40),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300 if LONG else 60, deadline=None)
@given(body=_bodies)
def test_fuzzed_broker_bodies_are_accepted_only_as_celery_triples(body: bytes) -> None:
    from kombu.message import Message as KombuMessage

    from scheduler.worker.guard import message_problem

    build: Any = KombuMessage
    message = build(
        body=body,
        content_type="application/json",
        content_encoding="utf-8",
        headers={"task": "demo.noop", "id": "x"},
    )
    problem = message_problem(message)
    try:
        decoded = json.loads(body)
    except ValueError:
        assert problem is not None
        return
    triple = (
        isinstance(decoded, list)
        and len(decoded) == 3
        and isinstance(decoded[0], list)
        and isinstance(decoded[1], dict)
        and (decoded[2] is None or isinstance(decoded[2], dict))
    )
    assert (problem is None) == triple, (decoded, problem)
