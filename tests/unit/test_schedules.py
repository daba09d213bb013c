"""Schedule definitions: durations, instants, validation and the YAML mapping (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from scheduler.core.definitions import (
    ScheduleDefinition,
    from_mapping,
    normalize,
    parse_duration,
    parse_instant,
    parse_json,
    to_mapping,
    validate,
)
from scheduler.core.exceptions import InvalidScheduleError

REGISTERED = frozenset({"demo.noop"})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", "30"), ("5m", "300"), ("1h", "3600"), ("1d", "86400"), ("1h30m", "5400"),
     ("250ms", "0.250"), ("2w", "1209600"), ("45", "45"), ("0.5", "0.5")],
)  # fmt: skip
def test_parse_duration(text: str, seconds: str) -> None:
    assert parse_duration(text) == Decimal(seconds)


@pytest.mark.parametrize("text", ["", "5x", "m5", "1h junk", "0s", "-3", "0"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidScheduleError):
        parse_duration(text)


def test_parse_instant_reads_naive_times_in_the_given_zone() -> None:
    assert parse_instant("2026-07-01T09:00", "Europe/Paris") == datetime(2026, 7, 1, 7, tzinfo=UTC)
    assert parse_instant("2026-07-01T09:00Z") == datetime(2026, 7, 1, 9, tzinfo=UTC)
    with pytest.raises(InvalidScheduleError, match="ISO 8601"):
        parse_instant("tomorrow")
    with pytest.raises(InvalidScheduleError):
        parse_instant("2026-07-01T09:00", "Mars/Olympus")


def test_parse_json_names_the_field() -> None:
    assert parse_json("[1, 2]", "args") == [1, 2]
    with pytest.raises(InvalidScheduleError, match=r"^args is not valid JSON"):
        parse_json("[1,", "args")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "nope.task"}, "not registered"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": None}, "exactly one"),
        ({"interval_seconds": Decimal(5)}, "exactly one"),
        ({"timezone": "Nowhere/City"}, "unknown time zone"),
        ({"args": {"a": 1}}, "JSON array"),
        ({"kwargs": [1]}, "JSON object"),
        ({"options": "x"}, "JSON object"),
        ({"misfire_policy": "later"}, "misfire policy"),
        ({"overlap_policy": "queue"}, "overlap policy"),
        ({"jitter_seconds": -1}, "jitter"),
        ({"max_runs": 0}, "max runs"),
        ({"name": " "}, "name"),
        ({"start_at": datetime(2026, 2, 1, tzinfo=UTC), "end_at": datetime(2026, 1, 1, tzinfo=UTC)},
         "end must be after start"),
        ({"end_at": datetime(9999, 12, 31, tzinfo=UTC)}, "end 9999-12-31.* out of range"),
        ({"cron": None, "run_at": datetime(1, 1, 1, tzinfo=UTC)}, r"time \(--at\).* out of range"),
        ({"cron": None, "interval_seconds": Decimal("NaN")}, "a number, not NaN"),
    ],
)  # fmt: skip
def test_validate_rejects(changes: dict[str, object], message: str) -> None:
    base = {"name": "job", "task": "demo.noop", "cron": "*/5 * * * *"}
    definition = ScheduleDefinition(**{**base, **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidScheduleError, match=message):
        validate(definition, REGISTERED)


def test_validate_accepts_each_kind() -> None:
    for kind in ({"cron": "0 3 * * *"}, {"interval_seconds": Decimal(30)},
                 {"run_at": datetime(2027, 1, 1, tzinfo=UTC)}):  # fmt: skip
        definition = ScheduleDefinition(name="job", task="demo.noop", **kind)
        assert validate(definition, REGISTERED) is definition


def test_mapping_round_trip_keeps_only_non_defaults() -> None:
    definition = from_mapping(
        {"name": "sync", "task": "demo.noop", "every": "5m", "timezone": "Europe/Berlin",
         "start_at": "2026-03-01T08:00", "kwargs": {"n": 1}, "overlap_policy": "skip"}
    )  # fmt: skip
    assert definition.interval_seconds == Decimal(300)
    assert definition.start_at == datetime(2026, 3, 1, 7, tzinfo=UTC)
    mapping = to_mapping(definition)
    assert mapping == {
        "name": "sync",
        "task": "demo.noop",
        "interval_seconds": 300,
        "timezone": "Europe/Berlin",
        "kwargs": {"n": 1},
        "start_at": "2026-03-01T07:00:00Z",
        "overlap_policy": "skip",
    }
    assert normalize(from_mapping(mapping)) == normalize(definition)


def test_mapping_errors() -> None:
    with pytest.raises(InvalidScheduleError, match="unknown field"):
        from_mapping({"name": "a", "task": "demo.noop", "cron": "@daily", "crontab": "x"})
    with pytest.raises(InvalidScheduleError, match="needs `name` and `task`"):
        from_mapping({"cron": "@daily"})
    with pytest.raises(InvalidScheduleError, match="mapping"):
        from_mapping(["name"])
