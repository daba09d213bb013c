"""The lead: when the beat starts writing runs ahead, and how far, from the rows coming."""

from __future__ import annotations

import pytest

from scheduler.core.writeahead import (
    INITIAL_ROWS_PER_S,
    MIN_SAMPLE_ROWS,
    WriteRate,
    first_sight_s,
    lead,
)

STEP = 0.25


def test_nothing_in_the_window_keeps_the_least_lead() -> None:
    result = lead([], step_s=STEP, rows_per_s=10_000, base_s=2, max_s=60)
    assert result.start_in_s is None
    assert result.horizon_s == 2


def test_a_small_burst_is_written_the_least_lead_ahead() -> None:
    # 1k rows due 20 s from now at 10k rows/s: 0.2 s of writing, doubled, plus 2 s
    result = lead([(20.0, 1_000)], step_s=STEP, rows_per_s=10_000, base_s=2, max_s=60)
    assert result.start_in_s == pytest.approx(20 - STEP - 0.2 - 2)
    assert result.horizon_s == 2


def test_a_big_burst_starts_early_enough_to_finish_with_margin() -> None:
    # 100k rows due 30 s ahead, 5k rows/s: 20 s of writing, 40 s with the margin
    profile = [(30.0, 100_000)]
    later = lead(profile, step_s=STEP, rows_per_s=5_000, base_s=2, max_s=60)
    assert later.start_in_s is not None
    assert later.start_in_s < 0
    assert later.horizon_s == 30.0


def test_the_lead_grows_with_the_count_and_shrinks_with_the_rate() -> None:
    def start(count: int, rate: float) -> float:
        value = lead([(50.0, count)], step_s=STEP, rows_per_s=rate, base_s=2, max_s=60)
        assert value.start_in_s is not None
        return value.start_in_s

    assert start(100_000, 10_000) < start(10_000, 10_000)
    assert start(10_000, 20_000) > start(10_000, 5_000)


def test_counts_add_up_earliest_first() -> None:
    # 5k due at 4 s alone would wait; with 20k already due at 1 s before them, both are late
    profile = [(1.0, 20_000), (4.0, 5_000)]
    result = lead(profile, step_s=STEP, rows_per_s=10_000, base_s=2, max_s=60)
    assert result.horizon_s == 4.0
    alone = lead([(4.0, 5_000)], step_s=STEP, rows_per_s=10_000, base_s=2, max_s=60)
    assert alone.horizon_s == 2


def test_the_horizon_never_passes_the_window() -> None:
    result = lead([(59.0, 10**7)], step_s=STEP, rows_per_s=1_000, base_s=2, max_s=30)
    assert result.start_in_s is None
    assert result.horizon_s == 2
    inside = lead([(29.0, 10**7)], step_s=STEP, rows_per_s=1_000, base_s=2, max_s=30)
    assert inside.horizon_s == 29.0


def test_write_ahead_off_writes_nothing_ahead() -> None:
    result = lead([(0.0, 500)], step_s=STEP, rows_per_s=10_000, base_s=0, max_s=0)
    assert result.horizon_s == 0
    assert result.start_in_s is not None
    assert result.start_in_s <= 0


def test_the_write_rate_starts_low_and_follows_measured_batches() -> None:
    rate = WriteRate()
    assert rate.rows_per_s == INITIAL_ROWS_PER_S
    assert not rate.measured
    rate.record(MIN_SAMPLE_ROWS - 1, 0.001)  # too small to tell
    assert not rate.measured
    rate.record(1_000, 0.1)
    assert rate.rows_per_s == pytest.approx(10_000)
    for _ in range(30):
        rate.record(1_000, 0.2)
    assert rate.rows_per_s == pytest.approx(5_000, rel=0.01)
    rate.record(1_000, 0.0)  # a clock that did not move is no sample
    assert rate.rows_per_s == pytest.approx(5_000, rel=0.01)


def test_rows_seen_for_the_first_time_are_written_as_far_ahead_as_their_count_asks() -> None:
    # one new row: the least lead; 100k at 5k rows/s: 40 s of writing with the margin
    assert first_sight_s(1, rows_per_s=5_000, base_s=2, max_s=60) == pytest.approx(2.0004)
    assert first_sight_s(0, rows_per_s=5_000, base_s=2, max_s=60) == 2
    assert first_sight_s(100_000, rows_per_s=5_000, base_s=2, max_s=60) == 42
    assert first_sight_s(100_000, rows_per_s=1_000, base_s=2, max_s=60) == 60
    assert first_sight_s(100_000, rows_per_s=1_000, base_s=0, max_s=0) == 0  # write-ahead off
