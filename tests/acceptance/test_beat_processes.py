"""Beats as real processes: sub-second pickup of raw inserts, SIGTERM, three beats and kill -9,
the optional leader mode."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import redis

from tests.support.brokers import queue_length
from tests.support.procs import processes, query, wait_for
from tests.support.status import PENDING, SUCCESS


def _beat_ready(database_url: str, broker_url: str, log_dir: Path) -> bool:
    return any(
        "listening for schedule changes" in p.read_text() for p in log_dir.glob("beat-*.log")
    )


def test_raw_insert_is_on_the_broker_within_a_second_and_sigterm_exits_0(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    with processes(tmp_path) as procs:
        beat = procs.beat()
        wait_for(lambda: _beat_ready(database_url, broker_url, tmp_path), timeout_s=30)
        # the beat now sleeps (nothing scheduled); a raw INSERT wakes it through NOTIFY
        lags = []
        for i in range(5):
            start = time.monotonic()
            query(
                database_url,
                f"INSERT INTO schedules (name, task, interval_seconds) VALUES ('raw-{i}', 'demo.noop', 3600)",
            )
            expected = i + 1

            def arrived(n: int = expected) -> bool:
                return queue_length(broker_url) >= n

            wait_for(arrived, timeout_s=5, interval_s=0.005)
            lags.append(time.monotonic() - start)
        assert max(lags) < 1.0, (lags, procs.logs())
        rows = query(database_url, "SELECT status_id FROM executions")
        assert len(rows) == 5
        # disable: no further dispatch
        query(database_url, "UPDATE schedules SET enabled = false")
        beat.send_signal(signal.SIGTERM)
        assert beat.wait(timeout=20) == 0, procs.logs()
        logs = procs.logs(tail=None)
        assert "database scheduler stopped" in logs
        assert " ERROR " not in logs, logs


def test_three_beats_with_kill_9_never_duplicate_or_lose_a_slot(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'every-second-' || i, 'demo.noop', 1, date_trunc('second', now()) + interval '3 s' "
        "FROM generate_series(1, 20) i",
    )
    # the lead capped at the least lookahead: a beat stopped by SIGTERM publishes every run it
    # holds (a lead sized longer under load would leave its last slot to a sweep, and at the
    # end of this test no beat is left to sweep)
    sweep_fast = {"SCHEDULER_BEAT_SWEEP_AFTER_S": "2", "SCHEDULER_BEAT_LOOKAHEAD_MAX_S": "2"}
    with processes(tmp_path) as procs:
        beats = [procs.beat(sweep_fast) for _ in range(3)]
        wait_for(lambda: queue_length(broker_url) > 0, timeout_s=30)
        started = time.monotonic()
        kills = 0
        while time.monotonic() - started < 12:
            time.sleep(2)
            victim = beats[kills % 3]
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            beats[kills % 3] = procs.beat(sweep_fast)
            kills += 1
        # the last victim's runs written ahead (lookahead 2 s) are swept 2 s after their slot
        time.sleep(8)
        for beat in beats:
            os.killpg(beat.pid, signal.SIGTERM)
        for beat in beats:
            beat.wait(timeout=20)
        logs = procs.logs(tail=None)
    _assert_every_slot_ran_once(database_url, schedules=20, logs=logs)
    # broker side: what was published
    client = redis.Redis.from_url(broker_url)
    try:
        import json

        ids = [json.loads(m)["headers"]["id"] for m in client.lrange("celery", 0, -1)]
    finally:
        client.close()
    # a beat killed between publish and marking `queued` leaves rows `pending`; the outbox
    # sweep republishes them with the same id: the only duplicates allowed on the broker
    republished = sum(int(n) for n in re.findall(r"sweep republished (\d+) pending", logs))
    assert len(ids) - len(set(ids)) <= republished
    assert kills >= 5


def _assert_every_slot_ran_once(database_url: str, *, schedules: int, logs: str) -> None:
    """Every-second schedules: no slot twice, none lost, none left unpublished."""
    rows = query(
        database_url,
        "SELECT schedule_id, scheduled_for, count(*) AS n FROM executions "
        "GROUP BY schedule_id, scheduled_for",
    )
    assert all(r["n"] == 1 for r in rows)
    # no slot lost: per schedule, consecutive slots are one second apart from first to last
    gaps = query(
        database_url,
        "SELECT schedule_id, count(*) AS n, "
        "extract(epoch FROM max(scheduled_for) - min(scheduled_for))::int AS span "
        "FROM executions GROUP BY schedule_id",
    )
    assert len(gaps) == schedules
    for g in gaps:
        assert g["n"] == g["span"] + 1, (g, logs)
    # everything that was committed got published: by the beat that wrote it, at its time
    # (also on SIGTERM), or by the sweep when that beat was killed
    pending = query(
        database_url, f"SELECT count(*) AS n FROM executions WHERE status_id = {PENDING}"
    )
    assert pending[0]["n"] == 0, logs


def test_leader_mode_one_beat_dispatches_and_a_standby_takes_over_after_kill_9(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'led-' || i, 'demo.noop', 1, date_trunc('second', now()) + interval '3 s' "
        "FROM generate_series(1, 5) i",
    )
    timeout_s = 2.0
    leader_mode = {
        "SCHEDULER_BEAT_LEADER_LOCK": "true",
        "SCHEDULER_BEAT_LEADER_LOCK_TIMEOUT_S": str(timeout_s),
        "SCHEDULER_BEAT_SWEEP_AFTER_S": "2",
    }

    def leads(i: int) -> bool:
        return "this beat is now the leader" in (tmp_path / f"beat-{i}.log").read_text()

    with processes(tmp_path) as procs:
        beats = [procs.beat(leader_mode), procs.beat(leader_mode)]
        wait_for(lambda: queue_length(broker_url) >= 10, timeout_s=30)
        assert [leads(0), leads(1)].count(True) == 1, procs.logs()
        leader = 0 if leads(0) else 1
        standby = 1 - leader
        os.killpg(beats[leader].pid, signal.SIGKILL)
        beats[leader].wait()
        killed = time.monotonic()
        wait_for(lambda: leads(standby), timeout_s=15)
        took_over_s = time.monotonic() - killed
        # slots under the new leader; the dead leader's runs written ahead are swept
        time.sleep(6)
        os.killpg(beats[standby].pid, signal.SIGTERM)
        assert beats[standby].wait(timeout=20) == 0, procs.logs()
        logs = procs.logs(tail=None)
    # the lock expires within its timeout; the standby asks every timeout / 3
    assert took_over_s < timeout_s + timeout_s / 3 + 1.0, (took_over_s, logs)
    _assert_every_slot_ran_once(database_url, schedules=5, logs=logs)


def test_runs_written_ahead_go_out_at_their_time_and_workers_run_them(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    """Every-second slots are written ahead and published from their prepared messages at
    their time: a real worker runs each one, and none is published before its slot."""
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'ahead-' || i, 'demo.noop', 1, date_trunc('second', now()) + interval '4 s' "
        "FROM generate_series(1, 5) i",
    )
    with processes(tmp_path) as procs:
        procs.beat()
        procs.worker("-P", "threads", "-c", "4")
        wait_for(
            lambda: (
                query(
                    database_url,
                    f"SELECT count(*) AS n FROM executions WHERE status_id = {SUCCESS}",
                )[0]["n"]
                >= 25
            ),
            timeout_s=60,
        )
        query(database_url, "UPDATE schedules SET enabled = false")
    rows = query(
        database_url,
        "SELECT status_id, created_at, scheduled_for, queued_at, started_at FROM executions "
        f"WHERE status_id = {SUCCESS}",
    )
    assert all(r["queued_at"] >= r["scheduled_for"] for r in rows), "published before its slot"
    assert all(r["started_at"] >= r["scheduled_for"] for r in rows)
    assert any(r["created_at"] < r["scheduled_for"] for r in rows), "nothing was written ahead"
