"""The one retry policy: the capped back-off and the bounded retry on unreachable errors."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.core.exceptions import DatabaseUnreachable
from scheduler.runtime.retry import backoff_s, retry_unreachable, unreachable


def test_backoff_doubles_from_its_first_wait_up_to_the_cap() -> None:
    assert [backoff_s(n, 10) for n in range(0, 7)] == [1, 1, 2, 4, 8, 10, 10]
    assert [backoff_s(n, 3, first_s=0.5) for n in range(1, 6)] == [0.5, 1, 2, 3, 3]
    assert backoff_s(10_000, 30) == 30


def test_the_beats_doubling_from_half_a_second_is_the_same_sequence() -> None:
    previous = 0.0
    for failures in range(1, 12):
        previous = min(max(previous * 2, 0.5), 30.0)
        assert backoff_s(failures, 30.0, first_s=0.5) == previous


def test_retry_tries_unreachable_errors_again_and_nothing_else() -> None:
    calls: list[int] = []
    seen: list[BaseException] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "reset")
        return "done"

    assert asyncio.run(retry_unreachable(flaky, attempts=3, on_retry=seen.append)) == "done"
    assert len(calls) == 3
    assert len(seen) == 2

    async def wrong() -> None:
        calls.append(1)
        raise ValueError("bad value")

    calls.clear()
    with pytest.raises(ValueError, match="bad value"):
        asyncio.run(retry_unreachable(wrong, attempts=5))
    assert len(calls) == 1


def test_retry_raises_the_last_error_after_its_attempts() -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise DatabaseUnreachable("down")

    with pytest.raises(DatabaseUnreachable):
        asyncio.run(retry_unreachable(down, attempts=4, wait_s=0.001))
    assert len(calls) == 4
    assert unreachable(DatabaseUnreachable("down"))
