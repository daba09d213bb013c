"""One clock: a beat and a worker whose host clocks are wrong (libfaketime) still fire each
slot on time by the database's clock and record true instants.

The database server is not under faketime (it is the test's real server); only the beat and
the worker processes are. Their monotonic clock stays true (FAKETIME_DONT_FAKE_MONOTONIC=1), as
on a host whose wall clock is merely set wrong. "True" is judged by the database: the test
polls the rows with `clock_timestamp()` and notes when each run's `queued_at` was first seen and
when the run was first seen done.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import processes, query, require_binary, wait_for

POLL_SQL = (
    "SELECT e.id, s.code AS status, e.scheduled_for, e.created_at, e.queued_at, e.started_at, "
    "e.completed_at, e.duration_ms, clock_timestamp() AS seen FROM executions e "
    "JOIN execution_statuses s ON s.id = e.status_id"
)
SLACK = timedelta(seconds=0.1)
"""Round trips: how far a recorded instant may be after the poll that saw it (clock tracking)."""
ON_TIME_S = 0.5
"""A slot is published this soon after its time by the database clock (typically 10-20 ms)."""
LAG = timedelta(seconds=5)
"""How long after an instant the poll may first see it (poll spacing, a loaded machine); far
below the clock errors tested, so a recorded instant from the host's clock cannot pass."""


def observe(
    url: str, want: int, timeout_s: float, since: datetime
) -> tuple[dict[Any, dict[str, Any]], dict[Any, datetime], dict[Any, datetime]]:
    """Poll until `want` runs are done; per run: its row, when its `queued_at` was first seen
    and when it was first seen done (by the database clock).

    A run may be claimed by the worker before the beat marks it queued (the mark follows the
    broker's confirmation), so `queued_at` is judged by when it was first visible, not by the
    first status past `pending`. Only slots after `since` count: the slots of the processes'
    start-up (imports, the first connections) say nothing of the clock."""
    rows: dict[Any, dict[str, Any]] = {}
    published: dict[Any, datetime] = {}
    done: dict[Any, datetime] = {}
    deadline = time.monotonic() + timeout_s
    while len(done.keys() & published.keys()) < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(done)} of {want} runs done within {timeout_s} s")
        for r in query(url, POLL_SQL + " WHERE e.scheduled_for > $1", since):
            rows[r["id"]] = r
            if r["queued_at"] is not None:
                published.setdefault(r["id"], r["seen"])
            if r["status"] == "success":
                done.setdefault(r["id"], r["seen"])
        time.sleep(0.01)
    return rows, published, done


@pytest.mark.parametrize("offset", ["+30s", "-30s", "+7m"])
def test_wrong_host_clock_fires_on_time_and_records_true_instants(
    offset: str, database_url: str, broker_url: str, tmp_path: Path
) -> None:
    faketime = require_binary("faketime")
    wrap = [faketime, "-f", offset]
    env = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    with processes(tmp_path) as procs:
        procs.start(
            "worker",
            "-m", "celery", "-A", "config.celery", "worker", "-P", "threads", "-c", "4",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
            env=env, wrap=wrap,
        )  # fmt: skip
        procs.start(
            "beat",
            "-m", "celery", "-A", "tests.acceptance.clock_app", "beat",
            "-S", "scheduler.beat:DatabaseScheduler", "-l", "INFO",
            env=env, wrap=wrap,
        )  # fmt: skip
        started = ("ready.", "times come from the database")  # the worker's, the beat's
        wait_for(lambda: all(s in procs.logs() for s in started), timeout_s=60, interval_s=0.1)
        (now,) = query(database_url, "SELECT clock_timestamp() AS at")
        since = now["at"] + timedelta(seconds=1)
        _, published, done = observe(database_url, want=5, timeout_s=60, since=since)
        rows = {r["id"]: r for r in query(database_url, POLL_SQL)}
        logs = procs.logs(tail=None)
    assert "beat_schedule synced into schedules (origin config): 1 created" in logs
    assert "times come from the database" in logs  # the offset was seen and logged
    delays = []
    for run_id in done.keys() & published.keys():
        r, seen_done = rows[run_id], done[run_id]
        slot, seen = r["scheduled_for"], published[run_id]
        delay = (r["queued_at"] - slot).total_seconds()
        delays.append(delay)
        instants = {
            k: r[k]
            for k in ("scheduled_for", "created_at", "queued_at", "started_at", "completed_at")
        }
        assert 0 <= delay <= LAG.total_seconds(), (offset, delay, instants)
        # the recorded instants are the database's: never after it saw them, never long before
        assert r["queued_at"] <= seen + SLACK, (offset, r, seen)
        assert seen - r["queued_at"] <= LAG, (offset, r, seen)
        assert slot - timedelta(seconds=3) <= r["created_at"] <= r["queued_at"], (offset, r)
        instants = {
            k: r[k]
            for k in ("scheduled_for", "created_at", "queued_at", "started_at", "completed_at")
        }
        assert slot - SLACK <= r["started_at"] <= r["completed_at"] <= seen_done + SLACK, (
            offset,
            instants,
            seen_done,
        )
        assert seen_done - r["completed_at"] <= LAG, (offset, r, seen_done)
        # the body's duration fits between the recorded start (before the claim) and end
        assert r["duration_ms"] <= (r["completed_at"] - r["started_at"]).total_seconds() * 1000 + 2
    print(f"faketime {offset}: dispatch delay by the database clock, s: {sorted(delays)}")
    # on time by the median: a clock error of the host would move every slot by the whole
    # offset (early ones fail `0 <= delay` above), where a busy machine delays some slots
    # by a fraction of a second (both cores taken by other processes: 2-424 ms)
    assert statistics.median(delays) <= ON_TIME_S, (offset, delays)


def test_a_jittered_slots_eta_is_counted_on_the_database_clock(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    """The ETA a schedule's jitter puts on its message is counted on the database clock: a beat
    whose host clock is 7 minutes fast must not delay the run by 7 minutes. The slot is due
    when the beat starts (its message is built at the publish, not written ahead)."""
    import json

    import redis

    from scheduler.core.planner import jitter_s

    faketime = require_binary("faketime")
    (row,) = query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, start_at, jitter_seconds, options) "
        "VALUES ('jittered', 'demo.noop', 3600, clock_timestamp(), 20, "
        '\'{"queue": "clock-jitter"}\') RETURNING id',
    )
    with processes(tmp_path) as procs:
        procs.beat_under([faketime, "-f", "+7m"], {"FAKETIME_DONT_FAKE_MONOTONIC": "1"})
        queued = wait_for(
            lambda: query(
                database_url,
                "SELECT scheduled_for, queued_at FROM executions WHERE queued_at IS NOT NULL",
            ),
            timeout_s=30,
            interval_s=0.05,
        )
    client = redis.Redis.from_url(broker_url)
    try:
        (raw,) = client.lrange("clock-jitter", 0, -1)
    finally:
        client.close()
    slot, queued_at = queued[0]["scheduled_for"], queued[0]["queued_at"]
    eta = datetime.fromisoformat(json.loads(raw)["headers"]["eta"])
    jitter = timedelta(seconds=jitter_s(row["id"], slot, 20))
    # built just before the publish, which `queued_at` records just after
    assert queued_at + jitter - LAG <= eta <= queued_at + jitter, (eta, queued_at, jitter)
