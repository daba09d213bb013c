"""A webhook receiver down for 30 s while two beats and two workers run: once it is back,
every delivery arrives, none twice."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from scheduler.observability.alerts import DELIVERY_HEADER, SIGNATURE_HEADER, rule_values, verify
from tests.support.observe import Receiver
from tests.support.procs import processes, query, wait_for
from tests.support.status import FAILED

RUNS = 6
OUTAGE_S = 30.0


def test_receiver_down_30s_every_delivery_arrives_once(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()  # not up yet: connections are refused
    values = rule_values(
        name="pager",
        schedules="down-*",
        events=["failed"],
        webhook=receiver.url,
        task=None,
        secret="k",
        late_after_s=None,
        stale_after_s=None,
        only_final_attempt=True,
    )
    columns = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    query(
        database_url,
        f"INSERT INTO notification_rules ({columns}) VALUES ({marks})",
        *values.values(),
    )
    query(
        database_url,
        "INSERT INTO schedules (name, task, run_at) SELECT 'down-' || i, 'demo.fail', now()"
        f" FROM generate_series(1, {RUNS}) i",
    )
    env = {
        "SCHEDULER_BEAT_MAX_SLEEP_S": "1",
        "SCHEDULER_ALERTS_POLL_S": "0.3",
        "SCHEDULER_ALERTS_RETRY_MAX_S": "2",
    }
    outage_started = time.monotonic()
    try:
        with processes(tmp_path) as procs:
            for _ in range(2):
                procs.start("beat", "-m", "scheduler.cli", "beat", env=env)
            for i in range(2):
                procs.worker("-P", "solo", "-n", f"w{i}@%h")

            def tried() -> bool:
                rows = query(
                    database_url,
                    "SELECT count(*) AS n FROM notification_deliveries WHERE attempts >= 2",
                )
                return bool(rows[0]["n"] == RUNS)

            wait_for(tried, timeout_s=OUTAGE_S, interval_s=0.5)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
            assert receiver.events() == []
            receiver.up()
            wait_for(lambda: len(receiver.events()) >= RUNS, timeout_s=15, interval_s=0.2)
            time.sleep(3)  # a second copy of anything would have come by now
            events = receiver.events()
    finally:
        receiver.down()
    ids = Counter(r.headers[DELIVERY_HEADER] for r in events)
    runs = Counter(r.json["execution_id"] for r in events)
    assert len(events) == RUNS, (len(events), procs.logs())
    assert set(ids.values()) == {1}
    assert set(runs.values()) == {1}
    assert all(verify(r.body, "k", r.headers[SIGNATURE_HEADER]) for r in events)
    failed = query(database_url, f"SELECT id FROM executions WHERE status_id = {FAILED}")
    assert {str(r["id"]) for r in failed} == set(runs)
    rows = query(database_url, "SELECT status, attempts FROM notification_deliveries")
    assert all(r["status"] == "sent" and r["attempts"] > 2 for r in rows), rows
