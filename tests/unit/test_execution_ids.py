"""Execution ids: UUIDv7 whose time places the row; a slot's id derived from the slot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.execution_ids import id_floor, id_time, new_execution_id, slot_execution_id
from scheduler.core.options import check_options
from scheduler.core.retention import parse_retention
from scheduler.store.partitions import Interval, choose_interval, parse_bounds, period_start

SLOT = datetime(2026, 12, 2, 10, 30, 0, 123_456, tzinfo=UTC)


def test_a_slot_always_gets_the_same_uuid7_of_its_time() -> None:
    first = slot_execution_id(42, SLOT)
    assert first == slot_execution_id(42, SLOT)
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert id_time(first) == SLOT.replace(microsecond=123_000)
    others = {
        slot_execution_id(43, SLOT),
        slot_execution_id(42, SLOT + timedelta(microseconds=1)),
        slot_execution_id(42, SLOT + timedelta(minutes=1)),
    }
    assert first not in others
    assert len(others) == 3


def test_ids_sort_by_time_and_fall_inside_their_bounds() -> None:
    day = period_start(SLOT, Interval.DAY)
    low, high = id_floor(day), id_floor(day + timedelta(days=1))
    for run_id in (slot_execution_id(1, SLOT), new_execution_id(SLOT), new_execution_id(day)):
        assert low <= run_id < high
    assert new_execution_id(SLOT) != new_execution_id(SLOT)
    assert id_time(uuid.uuid4()) is None
    assert slot_execution_id(1, day - timedelta(microseconds=1)) < low


def test_periods_bounds_and_the_interval_choice() -> None:
    assert period_start(SLOT, Interval.WEEK) == datetime(2026, 11, 30, tzinfo=UTC)
    low, high = id_floor(SLOT), id_floor(SLOT + timedelta(days=1))
    assert parse_bounds(f"FOR VALUES FROM ('{low}') TO ('{high}')") == (
        SLOT.replace(microsecond=124_000),
        (SLOT + timedelta(days=1)).replace(microsecond=124_000),
    )
    assert parse_bounds("DEFAULT") == (None, None)
    assert choose_interval("auto", 1_440_000, 100_000) is Interval.DAY
    assert choose_interval("auto", 50_000, 100_000) is Interval.WEEK
    assert choose_interval("week", 1_440_000, 100_000) is Interval.WEEK


def test_retention_values_and_the_per_schedule_option() -> None:
    assert parse_retention("14d") == timedelta(days=14)
    assert parse_retention("36h") == timedelta(hours=36)
    assert parse_retention("7") == timedelta(days=7)
    with pytest.raises(InvalidScheduleError):
        parse_retention("0")
    check_options({"retention_days": {"success": 30, "failure": 365.5}})
    for bad, message in (
        ({"retention_days": 30}, "must be an object"),
        ({"retention_days": {"ok": 3}}, "unknown outcome"),
        ({"retention_days": {"success": 0}}, "above 0"),
        ({"retention_days": {"success": "30d"}}, "above 0"),
    ):
        with pytest.raises(InvalidScheduleError, match=message):
            check_options(bad)
