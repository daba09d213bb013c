"""The dashboard's pure parts: password and token hashing, roles, the sign-in limiter,
SVG charts (escaped, bounded), fire times with DST notes, the runs cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from scheduler.api import decode_cursor, encode_cursor
from scheduler.core import accounts
from scheduler.core.accounts import Role
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.web import charts, pages
from scheduler.web.auth import (
    Principal,
    SignInLimiter,
    basic_credentials,
    is_loopback,
    require,
)
from scheduler.web.problems import HTTPProblem

NOW = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)


def test_password_hash_is_scrypt_salted_and_verifies() -> None:
    first = accounts.hash_password("s3cret password")
    second = accounts.hash_password("s3cret password")
    assert first.startswith("scrypt$16384$8$1$")
    assert first != second
    assert accounts.verify_password("s3cret password", first)
    assert not accounts.verify_password("s3cret passwore", first)
    assert not accounts.verify_password("x", "not a hash")
    assert not accounts.verify_password("", "bcrypt$1$2$3$4$5")


def test_tokens_are_random_and_stored_as_sha256() -> None:
    token = accounts.new_token()
    assert token.startswith("sch_")
    assert len(token) > 40
    assert accounts.hash_token(token) != token
    assert len(accounts.hash_token(token)) == 64
    assert accounts.new_token() != token


def test_roles_rank() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    with pytest.raises(HTTPProblem) as unauthenticated:
        require(None, Role.VIEWER)
    assert unauthenticated.value.status == 401
    with pytest.raises(HTTPProblem) as forbidden:
        require(Principal("v", Role.VIEWER, "token"), Role.OPERATOR)
    assert forbidden.value.status == 403


def test_sign_in_limiter_per_address_and_name() -> None:
    limiter = SignInLimiter(attempts=3, window_s=60)
    for _ in range(3):
        limiter.check("10.0.0.1", "alice")
        limiter.failed("10.0.0.1", "alice")
    with pytest.raises(HTTPProblem) as limited:
        limiter.check("10.0.0.1", "bob")
    assert limited.value.status == 429
    assert "Retry-After" in limited.value.headers
    with pytest.raises(HTTPProblem):
        limiter.check("10.0.0.2", "alice")
    limiter.check("10.0.0.2", "bob")


def test_basic_credentials_and_loopback() -> None:
    assert basic_credentials("YWxpY2U6cGE6c3M=") == ("alice", "pa:ss")
    assert basic_credentials("not base64!") is None
    assert basic_credentials("bm9jb2xvbg==") is None
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.0.2.1")
    assert not is_loopback(None)


def test_charts_escape_and_stay_small() -> None:
    runs = [
        {"status": "failed" if i % 5 == 0 else "success", "duration_ms": i * 10,
         "created_at": NOW - timedelta(minutes=i), "error_message": "<b>x</b>"}
        for i in range(50)
    ]  # fmt: skip
    spark = str(charts.sparkline(runs))
    assert spark.count("<path") == 2
    assert len(spark) < 3000
    history = str(charts.history([{**r, "status": "<script>"} for r in runs]))
    assert "<script>" not in history
    assert "&lt;script&gt;" in history
    rows = [{"hour": NOW.replace(minute=0) - timedelta(hours=h), "status": "success", "runs": 3}
            for h in range(30)]  # fmt: skip
    stacked = str(charts.runs_per_hour(rows, now=NOW))
    assert stacked.count("<rect") == 24
    timeline = str(charts.timeline({"status": "success", "created_at": NOW,
                                    "queued_at": NOW + timedelta(seconds=1), "started_at": None,
                                    "completed_at": NOW + timedelta(seconds=3)}, now=NOW))  # fmt: skip
    assert timeline.count("<circle") == 3
    assert "no runs" in str(charts.sparkline([]))


def test_upcoming_notes_the_dst_change() -> None:
    row = {"enabled": True, "cron": "30 2 * * *", "timezone": "Europe/Paris", "start_at": None,
           "end_at": None, "interval_seconds": None, "run_at": None, "next_run_at": None}  # fmt: skip
    times = pages.upcoming(row, 4, NOW)
    assert [t["utc"].isoformat() for t in times][:2] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
    ]
    assert times[1]["note"] == "UTC offset changes to +02:00 (daylight saving time)"
    assert times[0]["note"] == times[2]["note"] == ""
    assert pages.upcoming({**row, "enabled": False}, 4, NOW) == []
    every = {
        **row,
        "cron": None,
        "interval_seconds": Decimal(60),
        "next_run_at": NOW - timedelta(seconds=90),
    }
    assert [t["utc"] for t in pages.upcoming(every, 2, NOW)] == [
        NOW + timedelta(seconds=30), NOW + timedelta(seconds=90)
    ]  # fmt: skip
    assert pages.describe(row) == "cron 30 2 * * * (Europe/Paris)"
    assert pages.describe(every) == "every 1 minute"
    assert pages.duration(1500) == "1.50 s"
    assert pages.relative(NOW + timedelta(hours=2), NOW) == "in 2h"


def test_cursor_round_trip_and_refusal() -> None:
    key = uuid.uuid4()
    assert decode_cursor(encode_cursor(NOW, key)) == (NOW, key)
    for bad in ("", "2026-01-01~nope", "2026-01-01T00:00:00~" + str(key), "garbage"):
        with pytest.raises(InvalidScheduleError):
            decode_cursor(bad)
