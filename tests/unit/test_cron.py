"""Cron math and DST rules, checked against hand-computed instants."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.core.cron import (
    first_interval_fire,
    next_fire_times,
    next_interval_fire,
    parse_cron,
    validate_timezone,
)
from scheduler.core.exceptions import InvalidScheduleError


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


def local(tz: str, times: list[datetime]) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S%z") for t in times]


def test_new_york_spring_forward_fixed_time_in_gap_fires_once_after_gap() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist
    times = next_fire_times("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 3)
    assert local("America/New_York", times) == [
        "2026-03-08 03:00:00-0400",
        "2026-03-09 02:30:00-0400",
        "2026-03-10 02:30:00-0400",
    ]


def test_new_york_spring_forward_every_15_minutes_collapses_the_gap() -> None:
    times = next_fire_times("*/15 * * * *", "America/New_York", utc(2026, 3, 8, 6, 40), 4)
    assert local("America/New_York", times) == [
        "2026-03-08 01:45:00-0500",
        "2026-03-08 03:00:00-0400",
        "2026-03-08 03:15:00-0400",
        "2026-03-08 03:30:00-0400",
    ]


def test_new_york_fall_back_fixed_0130_fires_once() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice
    times = next_fire_times("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 3)
    assert local("America/New_York", times) == [
        "2026-11-01 01:30:00-0400",
        "2026-11-02 01:30:00-0500",
        "2026-11-03 01:30:00-0500",
    ]


def test_new_york_fall_back_every_15_minutes_fires_in_both_passes() -> None:
    times = next_fire_times("*/15 * * * *", "America/New_York", utc(2026, 11, 1, 5, 40), 8)
    assert local("America/New_York", times) == [
        "2026-11-01 01:45:00-0400",
        "2026-11-01 01:00:00-0500",
        "2026-11-01 01:15:00-0500",
        "2026-11-01 01:30:00-0500",
        "2026-11-01 01:45:00-0500",
        "2026-11-01 02:00:00-0500",
        "2026-11-01 02:15:00-0500",
        "2026-11-01 02:30:00-0500",
    ]
    # every real 15-minute interval, no duplicates, no gaps
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(times))


def test_fall_back_second_pass_start_does_not_repeat_the_first_pass() -> None:
    # starting inside the second pass, a fixed-hour job waits for the next day
    after = datetime(2026, 11, 1, 1, 10, tzinfo=ZoneInfo("America/New_York"), fold=1)
    times = next_fire_times("30 1 * * *", "America/New_York", after, 1)
    assert local("America/New_York", times) == ["2026-11-02 01:30:00-0500"]


def test_london_spring_and_autumn() -> None:
    spring = next_fire_times("30 1 * * *", "Europe/London", utc(2026, 3, 28, 12), 2)
    assert local("Europe/London", spring) == [
        "2026-03-29 02:00:00+0100",
        "2026-03-30 01:30:00+0100",
    ]
    autumn = next_fire_times("30 1 * * *", "Europe/London", utc(2026, 10, 24, 12), 2)
    assert local("Europe/London", autumn) == [
        "2026-10-25 01:30:00+0100",
        "2026-10-26 01:30:00+0000",
    ]


def test_lord_howe_half_hour_shift() -> None:
    # Lord Howe: 2026-04-05 02:00 +11 falls back to 01:30 +10:30; 01:45 happens twice
    fixed = next_fire_times("45 1 * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 6), 2)
    assert local("Australia/Lord_Howe", fixed) == [
        "2026-04-05 01:45:00+1100",
        "2026-04-06 01:45:00+1030",
    ]
    every = next_fire_times("*/15 * * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 14, 20), 4)
    assert local("Australia/Lord_Howe", every) == [
        "2026-04-05 01:30:00+1100",
        "2026-04-05 01:45:00+1100",
        "2026-04-05 01:30:00+1030",
        "2026-04-05 01:45:00+1030",
    ]
    # spring: 2026-10-04 02:00 +10:30 jumps to 02:30 +11; 02:15 does not exist
    gap = next_fire_times("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 6), 2)
    assert local("Australia/Lord_Howe", gap) == [
        "2026-10-04 02:30:00+1100",
        "2026-10-05 02:15:00+1100",
    ]


def test_leap_day_and_month_ends() -> None:
    leap = next_fire_times("0 0 29 2 *", "UTC", utc(2026, 1, 1), 2)
    assert leap == [utc(2028, 2, 29), utc(2032, 2, 29)]
    ends = next_fire_times("0 0 31 * *", "UTC", utc(2026, 1, 31, 1), 3)
    assert ends == [utc(2026, 3, 31), utc(2026, 5, 31), utc(2026, 7, 31)]


def test_six_fields_are_seconds_first_and_aliases_work() -> None:
    assert next_fire_times("*/10 * * * * *", "UTC", utc(2026, 1, 1, 0, 0, 5), 2) == [
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 20),
    ]
    assert next_fire_times("@daily", "Europe/Paris", utc(2026, 6, 1, 12), 1) == [
        utc(2026, 6, 1, 22)
    ]
    assert next_fire_times("@hourly", "UTC", utc(2026, 6, 1, 12), 1) == [utc(2026, 6, 1, 13)]


@pytest.mark.parametrize(
    "expr", ["", "* * *", "61 * * * *", "* * * * * * *", "@sometimes", "a b c d e"]
)
def test_invalid_cron_is_one_line(expr: str) -> None:
    with pytest.raises(InvalidScheduleError) as info:
        parse_cron(expr)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/Londn"])
def test_unknown_time_zones(name: str) -> None:
    with pytest.raises(InvalidScheduleError, match="IANA name"):
        validate_timezone(name)


def test_interval_grid_never_drifts() -> None:
    anchor = utc(2026, 1, 1, 0, 0, 0)
    step = Decimal("2.5")
    assert next_interval_fire(anchor, step, utc(2026, 1, 1, 0, 0, 1)) == utc(
        2026, 1, 1, 0, 0, 2
    ) + (timedelta(milliseconds=500))
    # late by 7.3 s: the next slot is still on the grid
    late = anchor + timedelta(seconds=7.3)
    assert next_interval_fire(anchor, step, late) == anchor + timedelta(seconds=7.5)
    assert first_interval_fire(anchor, step, anchor + timedelta(seconds=5)) == anchor + timedelta(
        seconds=5
    )
    assert first_interval_fire(anchor, step, anchor - timedelta(seconds=5)) == anchor


ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]
EXPRS = ["*/15 * * * *", "30 1 * * *", "0 */2 * * *", "5 4 * * 0", "0 0 1 * *", "*/7 2 * * *"]


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(EXPRS),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_fire_times_strictly_increase(expr: str, zone: str, start: datetime) -> None:
    times = next_fire_times(expr, zone, start.replace(tzinfo=UTC), 6)
    assert times[0] > start.replace(tzinfo=UTC)
    assert all(a < b for a, b in itertools.pairwise(times))
