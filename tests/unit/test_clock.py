"""The process clock: the database's time, carried forward with the monotonic clock."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.runtime.clock import DatabaseClock


def test_before_any_read_the_host_clock_is_used() -> None:
    clock = DatabaseClock()
    assert not clock.synced
    assert clock.age_s() == float("inf")
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 0.1


@pytest.mark.parametrize("offset_s", [30.0, -30.0, 420.0])
def test_a_reading_is_carried_forward_with_the_monotonic_clock(offset_s: float) -> None:
    clock = DatabaseClock()
    before = time.monotonic()
    database_time = datetime.now(UTC) + timedelta(seconds=offset_s)
    after = time.monotonic()
    clock.set(database_time, before, after)
    assert clock.synced
    assert clock.offset_s == pytest.approx(offset_s, abs=0.05)
    host = datetime.now(UTC)
    assert (clock.now() - host).total_seconds() == pytest.approx(offset_s, abs=0.05)


def test_the_instant_is_placed_half_way_through_the_round_trip() -> None:
    clock = DatabaseClock()
    now = time.monotonic()
    database_time = datetime(2030, 1, 1, tzinfo=UTC)
    clock.set(database_time, now - 2.0, now)  # read during a 2 s round trip ending now
    assert (clock.now() - database_time).total_seconds() == pytest.approx(1.0, abs=0.05)


def test_a_wrong_host_clock_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = DatabaseClock()
    with caplog.at_level(logging.WARNING, logger="scheduler.runtime.clock"):
        for _ in range(3):
            now = time.monotonic()
            clock.set(datetime.now(UTC) - timedelta(seconds=30), now, now)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "30.0 s ahead of the database's" in lines[0]
