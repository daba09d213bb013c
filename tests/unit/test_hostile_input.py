"""Hostile values at the pure layers: bounds, sanitising, redaction, YAML aliases."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from config.logging import FORMAT
from scheduler.cli.apply_cmd import safe_load
from scheduler.core.bounds import (
    MAX_JSON_DEPTH,
    SANITISED_MARK,
    Unreadable,
    json_depth,
    plain,
    safe_loads,
    storable,
    storable_json_text,
)
from scheduler.core.definitions import ScheduleDefinition, parse_json, validate
from scheduler.core.exceptions import ConfigurationError, InvalidScheduleError
from scheduler.core.planner import DueSchedule, PlannerSettings, plan
from scheduler.core.redaction import redact, redact_text
from scheduler.runtime.logs import RedactingFormatter
from scheduler.runtime.urls import check_broker_url, normalize_database_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def due(**changes: object) -> DueSchedule:
    values: dict[str, object] = {
        "id": 1, "name": "x", "task": "demo.noop", "cron": None, "interval_seconds": Decimal(60), "run_at": None,
        "timezone": "UTC", "args": [], "kwargs": {}, "options": {}, "start_at": None, "end_at": None,
        "max_runs": None, "misfire_policy": "run_once", "misfire_grace_seconds": None,
        "overlap_policy": "allow", "jitter_seconds": 0, "next_run_at": None, "total_run_count": 0,
    }  # fmt: skip
    values.update(changes)
    return DueSchedule(**values)  # type: ignore[arg-type]


def test_depth_is_measured_without_recursion() -> None:
    assert json_depth({}) == 0
    assert json_depth({"a": [1]}) == 2
    assert json_depth(nested(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert json_depth(deep) > MAX_JSON_DEPTH


def test_json_columns_past_the_parser_read_as_unreadable() -> None:
    assert safe_loads("[]") == []
    assert safe_loads('{"a": 1}') == {"a": 1}
    assert isinstance(safe_loads("[" * 100_000 + "]" * 100_000), Unreadable)
    assert isinstance(safe_loads("[" * 66 + "]" * 66), Unreadable)
    assert safe_loads("[" * 65 + "]" * 65) == json.loads("[" * 65 + "]" * 65)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested deeper than 64"),
        ({"x": "y" * 1_000_001}, "at most 1000000"),
        (Unreadable("nested"), "cannot be read"),
    ],
)
def test_one_validation_for_entry_points_and_beat(kwargs: object, message: str) -> None:
    definition = ScheduleDefinition(name="x", task="demo.noop", cron="@daily", kwargs=kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidScheduleError, match=message):
        validate(definition)
    flagged = plan(
        [due(kwargs=kwargs)], now=NOW, registered=None, settings=PlannerSettings()
    ).updates[0]
    assert message.split()[0] in str(flagged.last_error)
    assert flagged.next_run_at is None


def test_cli_json_is_bounded_before_parsing() -> None:
    with pytest.raises(InvalidScheduleError, match="nested"):
        parse_json("[" * 5000 + "]" * 5000, "--args")
    with pytest.raises(InvalidScheduleError, match="1 MB"):
        parse_json(json.dumps({"x": "y" * 1_000_001}), "--kwargs")


def test_interval_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = ScheduleDefinition(name="f", task="demo.noop", interval_seconds=Decimal("0.001"))
    with pytest.raises(InvalidScheduleError, match="at least 1s"):
        validate(fast)
    assert "at least 1s" in str(
        plan(
            [due(interval_seconds=Decimal("0.5"))],
            now=NOW,
            registered=None,
            settings=PlannerSettings(),
        )
        .updates[0]
        .last_error
    )
    monkeypatch.setenv("SCHEDULER_MIN_INTERVAL_S", "0.001")
    assert validate(fast) is fast


def test_whole_numbers_are_not_coerced() -> None:
    for field, value in (("misfire_grace_seconds", 1.5), ("jitter_seconds", 10**20)):
        definition = ScheduleDefinition(name="g", task="demo.noop", cron="@daily", **{field: value})  # type: ignore[arg-type]
        with pytest.raises(InvalidScheduleError):
            validate(definition)


def test_text_is_stored_with_a_marker_and_printed_plain() -> None:
    assert storable("ok") == "ok"
    stored = storable("a\x00b\ud800c")
    assert stored == "a\ufffdb\ufffdc" + SANITISED_MARK
    stored.encode("utf-8")
    text = storable_json_text(
        json.dumps({"k": "a\x00\ud800", "lit": "\\u0000"}, ensure_ascii=False)
    )
    assert json.loads(text) == {"k": "a\ufffd\ufffd", "lit": "\\u0000"}
    assert plain("\x1b[31mred\x1b[0m\x1b]0;title\x07 ok\x00") == "red ok"
    assert plain("line\n\ttab") == "line\n\ttab"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://app@db/prod?password=Hunter2x", "Hunter2x"),
        ("postgresql://app:pa#ss/wo?rd@db:5432/prod", "pa#ss/wo?rd"),
        ("redis://:RedisPw/456@cache:6379/0", "RedisPw/456"),
        ("amqp://user:se@cret@mq//", "se@cret"),
    ],
)
def test_every_url_shape_is_redacted(url: str, secret: str) -> None:
    assert secret not in redact(url)
    assert secret not in redact_text(f"cannot connect to {url}: refused")


def test_passwords_are_masked_inside_third_party_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "redis://:RedisPw/456@cache:6379/0")
    leaked = "Port could not be cast to integer value as 'RedisPw'"
    assert "RedisPw" not in redact_text(leaked)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (leaked,), None)
    assert "RedisPw" not in RedactingFormatter(FORMAT).format(record)
    with pytest.raises(ConfigurationError, match="percent-encode") as refused:
        check_broker_url("redis://:RedisPw/456@cache:6379/0")
    assert "RedisPw" not in str(refused.value)
    with pytest.raises(ConfigurationError, match="percent-encode"):
        normalize_database_url("postgresql://app:pa#ss@db/prod")


def test_yaml_aliases_are_refused_before_expansion() -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    bomb = "\n".join(levels) + "\n"
    started = time.perf_counter()
    with pytest.raises(InvalidScheduleError, match="aliases"):
        safe_load(bomb)
    assert time.perf_counter() - started < 1
    assert safe_load("schedules: [{name: x, cron: '*/5 * * * *'}]") == {
        "schedules": [{"name": "x", "cron": "*/5 * * * *"}]
    }
