"""Alerts end to end with a real beat and worker: failed, lost, late, stale and recovered each
reach a loopback webhook once, signed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from scheduler.observability.alerts import DELIVERY_HEADER, SIGNATURE_HEADER, rule_values, verify
from tests.support.observe import Receiver
from tests.support.procs import processes, query, wait_for
from tests.support.status import FAILED, RUNNING

SECRET = "hook-secret"
FAST = {
    "SCHEDULER_BEAT_MAX_SLEEP_S": "1",
    "SCHEDULER_ALERTS_POLL_S": "0.3",
    "SCHEDULER_ALERTS_RETRY_MAX_S": "1",
    "SCHEDULER_WEB_URL": "http://dash.example",
}


def _rule(url: str, name: str, glob: str, events: list[str], hook: str, **extra: int) -> None:
    values = rule_values(
        name=name,
        schedules=glob,
        events=events,
        webhook=hook,
        task=None,
        secret=SECRET,
        late_after_s=extra.get("late_after_s"),
        stale_after_s=extra.get("stale_after_s"),
        only_final_attempt=True,
    )
    columns = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    query(url, f"INSERT INTO notification_rules ({columns}) VALUES ({marks})", *values.values())


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_failed_lost_late_stale_recovered_arrive_once_signed(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    receiver.up()
    url = database_url
    _rule(
        url, "ops", "al-*", ["failed", "lost", "late", "recovered"], receiver.url, late_after_s=30
    )
    _rule(url, "dead-man", "stale-*", ["stale"], receiver.url, stale_after_s=1)
    query(
        url,
        "INSERT INTO schedules (name, task, run_at, kwargs, misfire_grace_seconds) VALUES"
        " ('al-fail', 'demo.fail', now(), '{\"message\": \"boom\"}', 60),"
        " ('al-late', 'demo.noop', now() - interval '60 seconds', '{}', 120)",
    )
    query(
        url,
        "INSERT INTO schedules (name, task, interval_seconds) VALUES"
        " ('al-rec', 'demo.noop', 3600), ('al-lost', 'demo.sleep', 3600),"
        " ('stale-job', 'demo.fail', 3600)",
    )
    # al-rec failed last time; al-lost has a run whose worker process is gone
    query(
        url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id,"
        " created_at, completed_at)"
        f" SELECT gen_random_uuid(), id, task, '[]', '{{}}', 'manual', {FAILED}, now() - interval '1 hour',"
        " now() - interval '1 hour' FROM schedules WHERE name = 'al-rec'",
    )
    query(
        url,
        "UPDATE schedules SET enabled = false, next_run_at = NULL WHERE name = 'al-lost'",
    )
    query(
        url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id,"
        " created_at, started_at, worker)"
        f" SELECT gen_random_uuid(), id, task, '[]', '{{}}', 'manual', {RUNNING}, now() - interval '1 minute',"
        " now() - interval '1 minute', $1 FROM schedules WHERE name = 'al-lost'",
        f"{socket.gethostname()}:{_dead_pid()}",
    )
    try:
        with processes(tmp_path) as procs:
            procs.start("beat", "-m", "scheduler.cli", "beat", env=FAST)
            procs.worker("-P", "solo")
            expected = {"failed", "lost", "late", "stale", "recovered"}
            wait_for(
                lambda: {r.json["event"] for r in receiver.events()} >= expected,
                timeout_s=60,
                interval_s=0.2,
            )
            time.sleep(3)  # anything sent twice would have come by now
            events = receiver.events()
    finally:
        receiver.down()
    counts = Counter((r.json["event"], r.json["schedule"]) for r in events)
    assert counts == {
        ("failed", "al-fail"): 1,
        ("lost", "al-lost"): 1,
        ("late", "al-late"): 1,
        ("recovered", "al-rec"): 1,
        ("stale", "stale-job"): 1,
    }, (counts, procs.logs())
    for got in events:
        assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
        assert got.headers[DELIVERY_HEADER]
        if got.json["event"] != "stale":
            assert got.json["url"] == f"http://dash.example/runs/{got.json['execution_id']}"
    failed = next(r.json for r in events if r.json["event"] == "failed")
    assert failed["status"] == "failed"
    assert failed["error_message"] == "boom"
    rows = query(url, "SELECT status, attempts FROM notification_deliveries")
    assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}
