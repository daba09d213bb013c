"""Alert events written by the database in the transaction that records them, once each;
the delivery loop signs, retries with back-off and never sends a row twice."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from config.settings import Settings
from scheduler.core.domain import ExecutionStatus
from scheduler.observability.alerts import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Deliverer,
    rule_values,
    send_test,
    verify,
)
from scheduler.runtime import db as scheduler_db
from tests.support.observe import Receiver
from tests.support.procs import query
from tests.support.status import QUEUED

SECRET = "s3cret"


def _rule(url: str, name: str, events: str, glob: str = "al-*", **extra: object) -> None:
    values = rule_values(
        name=name,
        schedules=glob,
        events=events.split(","),
        webhook=None if extra.get("task") else "http://127.0.0.1:9/none",
        task=extra.get("task"),  # type: ignore[arg-type]
        secret=SECRET,
        late_after_s=extra.get("late_after_s"),  # type: ignore[arg-type]
        stale_after_s=extra.get("stale_after_s"),  # type: ignore[arg-type]
        only_final_attempt=bool(extra.get("only_final_attempt")),
    )
    query(
        url,
        "INSERT INTO notification_rules (name, schedules, schedules_regex, events, webhook_url,"
        " secret, late_after_s, stale_after_s, only_final_attempt)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        values["name"],
        values["schedules"],
        values["schedules_regex"],
        values["events"],
        values["webhook_url"],
        values["secret"],
        values["late_after_s"],
        values["stale_after_s"],
        values["only_final_attempt"],
    )


def _schedule(url: str, name: str) -> int:
    rows = query(
        url,
        "INSERT INTO schedules (name, task, interval_seconds) VALUES ($1, 'demo.noop', 3600)"
        " RETURNING id",
        name,
    )
    return int(rows[0]["id"])


def _run(url: str, schedule_id: int, status: ExecutionStatus, **cols: object) -> uuid.UUID:
    run_id = uuid.uuid4()
    query(
        url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
        " status_id, created_at) VALUES ($1, $2, 'demo.noop', '[]', '{}', 'schedule',"
        " now() - $3 * interval '1 second', $4, clock_timestamp())",
        run_id,
        schedule_id,
        float(cols.get("slot_ago_s", 0)),  # type: ignore[arg-type]
        status.id,
    )
    return run_id


def _set(url: str, run_id: uuid.UUID, status: ExecutionStatus, attempt: int = 1) -> None:
    query(
        url,
        "UPDATE executions SET status_id = $2, attempt = $3, error_message = 'boom' WHERE id = $1",
        run_id,
        status.id,
        attempt,
    )


def _deliveries(url: str) -> list[tuple[str, str, str]]:
    rows = query(
        url,
        "SELECT r.name AS rule, d.event, d.event_key FROM notification_deliveries d"
        " JOIN notification_rules r ON r.id = d.rule_id ORDER BY d.created_at, r.name",
    )
    return [(r["rule"], r["event"], r["event_key"]) for r in rows]


def test_run_events_are_written_once_by_the_database(database_url: str) -> None:
    url = database_url
    _rule(url, "every", "failed,timeout,lost,missed,late,recovered", late_after_s=2)
    _rule(url, "final", "failed", only_final_attempt=True)
    sid = _schedule(url, "al-job")
    other = _schedule(url, "unwatched")

    run = _run(url, sid, ExecutionStatus.RUNNING)
    _set(url, run, ExecutionStatus.RETRYING, attempt=1)  # will retry: only "every" pages
    assert _deliveries(url) == [("every", "failed", f"{run}:1")]
    _set(url, run, ExecutionStatus.RUNNING, attempt=2)
    _set(url, run, ExecutionStatus.FAILED, attempt=2)
    _set(url, run, ExecutionStatus.FAILED, attempt=2)  # no change of status: nothing new
    assert sorted(_deliveries(url)[1:]) == [
        ("every", "failed", str(run)),
        ("final", "failed", str(run)),
    ]

    ok = _run(url, sid, ExecutionStatus.RUNNING)
    _set(url, ok, ExecutionStatus.SUCCESS)
    assert _deliveries(url)[-1] == ("every", "recovered", str(ok))
    again = _run(url, sid, ExecutionStatus.RUNNING)
    _set(url, again, ExecutionStatus.SUCCESS)  # success after success: nothing
    assert len(_deliveries(url)) == 4

    missed = _run(url, sid, ExecutionStatus.MISSED)
    lost = _run(url, sid, ExecutionStatus.RUNNING)
    _set(url, lost, ExecutionStatus.LOST)
    late = _run(url, sid, ExecutionStatus.PENDING, slot_ago_s=5)
    on_time = _run(url, sid, ExecutionStatus.PENDING, slot_ago_s=0)
    query(
        url,
        f"UPDATE executions SET queued_at = now(), status_id = {QUEUED} WHERE id = ANY($1)",
        [late, on_time],
    )
    assert _deliveries(url)[4:] == [
        ("every", "missed", str(missed)),
        ("every", "lost", str(lost)),
        ("every", "late", str(late)),
    ]
    unwatched = _run(url, other, ExecutionStatus.RUNNING)
    _set(url, unwatched, ExecutionStatus.FAILED)
    assert len(_deliveries(url)) == 7


def test_paused_by_hand_pages_finished_by_the_beat_does_not(database_url: str) -> None:
    url = database_url
    _rule(url, "pauses", "paused")
    _schedule(url, "al-a")
    _schedule(url, "al-b")
    query(url, "UPDATE schedules SET enabled = false WHERE name = 'al-a'")
    query(
        url,
        "WITH beat AS (SELECT set_config('scheduler.origin', 'beat', true))"
        " UPDATE schedules SET enabled = false FROM beat WHERE name = 'al-b'",
    )
    assert [(r, e) for r, e, _ in _deliveries(url)] == [("pauses", "paused")]


def _settings(**overrides: object) -> Settings:
    return Settings(alerts_retry_max_s=1, alerts_timeout_s=2, **overrides)  # type: ignore[arg-type]


def test_stale_is_found_once_and_deliveries_are_signed_retried_never_doubled(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url
    receiver = Receiver()
    _rule(url, "dead-man", "stale", glob="al-stale", stale_after_s=1)
    query(url, "UPDATE notification_rules SET webhook_url = $1", receiver.url)
    sid = _schedule(url, "al-stale")
    query(url, "UPDATE schedules SET created_at = now() - interval '1 hour' WHERE id = $1", sid)
    runtime = scheduler_db.get_runtime(url)
    sessions = runtime.sessions
    beats = [Deliverer(sessions, _settings()) for _ in range(2)]

    async def both() -> int:
        return sum(await asyncio.gather(*(b.deliver_due() for b in beats)))

    assert runtime.run(beats[0].check_stale()) == 1
    assert runtime.run(beats[1].check_stale()) == 0  # keyed by the last success (none): once

    # receiver down: the attempt is counted and put off
    assert runtime.run(both()) == 1
    row = query(
        url,
        "SELECT status, attempts, last_error, next_attempt_at > now() AS later FROM notification_deliveries",
    )[0]
    assert (row["status"], row["attempts"], row["later"]) == ("pending", 1, True)
    assert row["last_error"]

    receiver.up()
    try:
        time.sleep(1.1)
        for _ in range(3):
            runtime.run(both())
        events = receiver.events()
        assert len(events) == 1
        got = events[0]
        assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
        assert got.json["event"] == "stale"
        assert got.json["schedule"] == "al-stale"
        assert set(got.json) == {
            "event",
            "rule",
            "schedule",
            "execution_id",
            "status",
            "scheduled_for",
            "error_message",
            "url",
        }
        delivery = query(url, "SELECT id, status, attempts FROM notification_deliveries")[0]
        assert got.headers[DELIVERY_HEADER] == str(delivery["id"])
        assert (delivery["status"], delivery["attempts"]) == ("sent", 2)

        sent = runtime.run(send_test(sessions, _settings(), "dead-man"))
        assert sent is not None
        assert sent[1].sent
        assert receiver.events()[-1].json["event"] == "test"
        assert runtime.run(send_test(sessions, _settings(), "no-such-rule")) is None
    finally:
        receiver.down()


def test_alerts_cli_add_list_test_remove(database_url: str, broker_url: str) -> None:
    from click.testing import CliRunner

    from scheduler.cli import main

    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(main, list(args), catch_exceptions=False)

    receiver = Receiver()
    receiver.up()
    try:
        added = cli(
            "alerts",
            "add",
            "ops",
            "--schedules",
            "nightly-*",
            "--events",
            "failed,stale",
            "--stale-after-s",
            "3600",
            "--webhook",
            receiver.url,
            "--secret",
            SECRET,
            "--only-final-attempt",
        )
        assert added.exit_code == 0, added.output
        for args, expected in (
            (["--events", "late", "--webhook", receiver.url], "--late-after-s"),
            (["--events", "failed,nope", "--webhook", receiver.url], "unknown event nope"),
            (["--events", "failed"], "exactly one of --webhook URL or --task NAME"),
            (["--events", "failed", "--webhook", "ftp://x"], "http(s) URL"),
        ):
            bad = cli("alerts", "add", "x", *args)
            assert bad.exit_code == 2
            assert expected in bad.output
            assert bad.output.count("\n") == 1
        assert "exists" in cli("alerts", "add", "ops", "--events", "failed", "--task", "t").output
        sent = cli("alerts", "test", "ops")
        assert sent.exit_code == 0, sent.output
        got = receiver.events()[-1]
        assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
        listed = json.loads(cli("alerts", "list", "--json").output)
        assert [(r["name"], r["events"], r["sent"], r["signed"]) for r in listed] == [
            ("ops", ["failed", "stale"], 1, True)
        ]
        assert SECRET not in cli("alerts", "list", "--json").output
        assert "test" in cli("alerts", "list", "--deliveries").output
    finally:
        receiver.down()
    down = cli("alerts", "test", "ops")
    assert down.exit_code == 2
    assert "the beats will retry it" in down.output
    assert cli("alerts", "remove", "ops").exit_code == 0
    missing = cli("alerts", "remove", "ops")
    assert missing.exit_code == 2
    assert "no alert rule named 'ops'" in missing.output
    assert cli("alerts", "list").output.strip() == "no alert rules"


def test_metrics_monitor_marks_schedules_and_refresh_reads_them(database_url: str) -> None:
    from click.testing import CliRunner

    from scheduler.cli import main
    from scheduler.observability import database_series

    runner = CliRunner()
    _schedule(database_url, "nightly-a")
    _schedule(database_url, "nightly-b")
    _schedule(database_url, "other")
    marked = runner.invoke(main, ["metrics", "monitor", "nightly-*"], catch_exceptions=False)
    assert marked.exit_code == 0
    assert "2 schedules monitored" in marked.output
    none = runner.invoke(main, ["metrics", "monitor", "zzz*"], catch_exceptions=False)
    assert none.exit_code == 2
    assert "no schedule matches" in none.output
    assert runner.invoke(main, ["metrics"], catch_exceptions=False).exit_code == 2
    query(database_url, "UPDATE schedules SET next_run_at = now() + interval '1 hour'")
    rows = query(database_url, "SELECT name FROM schedules WHERE monitored ORDER BY name")
    assert [r["name"] for r in rows] == ["nightly-a", "nightly-b"]

    source = database_series.DatabaseMetrics(Settings(metrics_schedule_limit=1))
    runtime = scheduler_db.get_runtime(database_url)

    async def refresh() -> None:
        async with runtime.sessions() as session:
            await source.refresh(session)

    runtime.run(refresh())
    text = source.text.decode()
    assert 'schedule="nightly-a"' in text
    assert "nightly-b" not in text  # capped by metrics_schedule_limit
    assert "scheduler_outbox_pending 0.0" in text
