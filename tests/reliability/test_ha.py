"""Three beats, every-second schedules, one beat SIGKILLed every few seconds and restarted:
no slot runs twice, none is lost within grace, no task id is published twice."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time

import redis

from tests.reliability.conftest import LONG, OwnServices
from tests.support.procs import processes, query, wait_for
from tests.support.status import PENDING

SCHEDULES = 500 if LONG else 50
RUN_S = 60 if LONG else 10
KILL_EVERY_S = 3 if LONG else 2


def test_three_beats_under_kill_9(own_services: OwnServices) -> None:
    own = own_services
    query(
        own.database_url,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'ha-' || i, 'demo.noop', 1, date_trunc('second', now()) + interval '4 s' "
        f"FROM generate_series(1, {SCHEDULES}) i",
    )
    client = redis.Redis.from_url(own.broker_url)
    restarts = 0
    try:
        with processes(own.log_dir) as procs:
            sweep_fast = {"SCHEDULER_BEAT_SWEEP_AFTER_S": "2"}
            beats = [procs.beat(sweep_fast) for _ in range(3)]
            wait_for(lambda: client.llen("celery") > 0, timeout_s=60, interval_s=0.1)
            started = time.monotonic()
            while time.monotonic() - started < RUN_S:
                time.sleep(KILL_EVERY_S)
                index = restarts % 3
                os.killpg(beats[index].pid, signal.SIGKILL)
                beats[index].wait()
                beats[index] = procs.beat(sweep_fast)
                restarts += 1
            query(own.database_url, "UPDATE schedules SET enabled = false")
            # the sweep publishes what a killed beat left pending, and withdraws the runs
            # it had written ahead (lookahead 2 s) for slots after the disable
            time.sleep(8)
            logs = procs.logs(tail=None)
        ids = [json.loads(m)["headers"]["id"] for m in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    per_schedule = query(
        own.database_url,
        "SELECT count(*) AS n, count(DISTINCT scheduled_for) AS slots, "
        "extract(epoch FROM max(scheduled_for) - min(scheduled_for))::int + 1 AS expected "
        "FROM executions GROUP BY schedule_id",
    )
    executed = sum(r["n"] for r in per_schedule)
    distinct = sum(r["slots"] for r in per_schedule)
    expected = sum(r["expected"] for r in per_schedule)
    pending = query(
        own.database_url, f"SELECT count(*) AS n FROM executions WHERE status_id = {PENDING}"
    )[0]["n"]
    duplicated_on_broker = len(ids) - len(set(ids))
    print(
        f"\nslots expected {expected}, executed {executed}, duplicated {executed - distinct}, "
        f"lost {expected - distinct}, broker duplicates {duplicated_on_broker}, "
        f"left pending {pending}, beat restarts survived {restarts}"
    )
    assert len(per_schedule) == SCHEDULES
    assert executed == distinct, "a slot ran twice"
    if distinct != expected:
        sample = query(
            own.database_url,
            "SELECT scheduled_for, status_id, created_at, queued_at FROM executions "
            "WHERE schedule_id = (SELECT min(schedule_id) FROM executions) ORDER BY 1",
        )
        disabled_at = query(own.database_url, "SELECT min(updated_at) AS t FROM schedules")
        slots = [r["scheduled_for"] for r in sample]
        gaps = [(a, b) for a, b in itertools.pairwise(slots) if (b - a).seconds > 1]
        near = [r for r in sample if any(a <= r["scheduled_for"] <= b for a, b in gaps)]
        raise AssertionError(
            f"slots lost: {expected - distinct}; disabled at {disabled_at[0]['t']}; one "
            f"schedule's gaps {gaps}, around them: {near}\n{logs[-3000:]}"
        )
    assert pending == 0
    execution_ids = {str(r["id"]) for r in query(own.database_url, "SELECT id FROM executions")}
    assert set(ids) == execution_ids, "every slot published, nothing else"
    republished = sum(int(n) for n in re.findall(r"sweep republished (\d+) pending", logs))
    assert duplicated_on_broker <= republished, "a duplicate message that is not the outbox's retry"
