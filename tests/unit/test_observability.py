"""Pure parts of the observability: globs, signatures, back-off, bodies, log lines, buckets."""

from __future__ import annotations

import json
import logging
import re

import pytest

from config.settings import Settings
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.observability import database_series, metrics
from scheduler.observability.alerts import (
    body_bytes,
    glob_regex,
    parse_events,
    signature,
    verify,
)
from scheduler.observability.health import liveness_bound_s
from scheduler.runtime.logs import JsonFormatter, RedactingFormatter, redact
from scheduler.runtime.retry import backoff_s


def test_glob_regex_anchors_and_escapes() -> None:
    pattern = re.compile(glob_regex("nightly-*.v?[0-9]"))
    assert pattern.match("nightly-a.vx7")
    assert pattern.match("nightly-report.vx10") is None
    assert pattern.match("xnightly-a.vx7") is None
    assert pattern.match("nightly-aXvx7") is None  # the dot is literal
    assert re.compile(glob_regex("a+b(c)|d")).match("a+b(c)|d")
    assert re.compile(glob_regex("[!a]x")).match("bx")
    assert re.compile(glob_regex("*")).match("")


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = body_bytes({"event": "failed", "execution_id": "e1"}, "https://ops.example/")
    assert json.loads(body)["url"] == "https://ops.example/runs/e1"
    assert body == body_bytes({"execution_id": "e1", "event": "failed"}, "https://ops.example")
    header = signature(body, "k")
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert verify(body, "k", header)
    assert not verify(body + b" ", "k", header)
    assert not verify(body, "other", header)
    assert not verify(body, "k", None)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_events_are_checked() -> None:
    assert parse_events("failed, lost,failed") == ["failed", "lost"]
    with pytest.raises(InvalidScheduleError, match="unknown event nope"):
        parse_events("failed,nope")


def test_liveness_bound_follows_the_longest_sleep() -> None:
    assert liveness_bound_s(Settings()) == 90.0
    assert liveness_bound_s(Settings(beat_max_sleep_s=1, beat_backoff_max_s=1)) == 5.0
    assert liveness_bound_s(Settings(beat_liveness_s=7)) == 7.0


def test_buckets_span_a_millisecond_to_an_hour_and_are_configurable() -> None:
    assert metrics.buckets(Settings())[0] == 0.001
    assert metrics.buckets(Settings())[-1] == 3600.0
    assert metrics.buckets(Settings(metrics_buckets=[2.0, 0.5])) == (0.5, 2.0)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("scheduler.x", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_log_lines_never_show_a_url_password() -> None:
    url = "postgresql+asyncpg://app:hunter2@db:5432/jobs"
    assert redact(f"cannot reach {url}") == "cannot reach postgresql+asyncpg://app:***@db:5432/jobs"
    assert redact("amqp://ops:rabbitpw@rabbit//") == "amqp://ops:***@rabbit//"
    assert redact("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    for formatter in (JsonFormatter(), RedactingFormatter("%(message)s")):
        line = formatter.format(_record("connecting to %s", url))
        assert "hunter2" not in line
        assert "app:***@db" in line


def test_json_line_has_the_fields_and_the_context() -> None:
    line = JsonFormatter().format(_record("run %s", "x", execution_id="e-1", schedule="nightly"))
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "scheduler.x"
    assert entry["message"] == "run x"
    assert entry["execution_id"] == "e-1"
    assert entry["schedule"] == "nightly"
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_database_series_render_as_valid_text_with_escaped_labels() -> None:
    from datetime import UTC, datetime

    from prometheus_client.parser import text_string_to_metric_families

    at = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    text = database_series.render_database(
        2,
        [
            database_series.ScheduleSample('odd "name"\\x', at, at, "failed"),
            database_series.ScheduleSample("never-ran", at, None, None),
        ],
    )
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    assert families["scheduler_outbox_pending"].samples[0].value == 2.0
    nxt = families["scheduler_schedule_next_run_timestamp_seconds"].samples
    assert [s.labels["schedule"] for s in nxt] == ['odd "name"\\x', "never-ran"]
    assert nxt[0].value == at.timestamp()
    assert len(families["scheduler_schedule_last_success_timestamp_seconds"].samples) == 1
    (status,) = families["scheduler_schedule_last_status"].samples
    assert status.labels == {"schedule": 'odd "name"\\x', "status": "failed"}
