"""Burst: n schedules due at the same instant (`--only burst`).

Three arrangements of "due" (a beat running when the rows are inserted 5 s ahead; one-off rows
inserted with SQL 20 s ahead and the beat started afterwards; either with a busy loop on the
second core), and "overdue" (rows found already due by one `Dispatcher.run_once`). Each figure
is the seconds from the slot (or from the start of the pass) until the last run's `queued_at`,
taken by the beat after the message is on the broker. Anchors (benchmarks.anchors) in the same run:
kombu publishing the same n prebuilt messages in one producer batch (measured in the same
conditions, busy core or not, just before the arrangement), celery's PersistentScheduler and
RedBeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.anchors import celery_beat_burst_s, kombu_batch_s, redbeat_burst_s
from benchmarks.env import Env, run, sql, start_beat
from benchmarks.processes import busy_core, stop

GOAL_S = {10_000: 0.25, 100_000: 1.0}
"""Issue 16: every due arrangement within this many seconds after the slot."""


def insert_due_schedules(url: str, n: int, at: datetime) -> None:
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, interval_seconds, next_run_at, start_at) "
            "SELECT 'burst-' || i, 'demo.noop', 3600, $1, $1 FROM generate_series(1, $2) i",
            at,
            n,
        )
    )


def overdue_s(env: Env, n: int) -> float:
    """n rows already due when one `Dispatcher.run_once` starts (a beat back from an outage):
    seconds from the start of the pass until the last run is on the broker."""
    from config.celery import app
    from config.settings import Settings
    from scheduler.beat.dispatcher import Dispatcher
    from scheduler.broker.publisher import Publisher
    from scheduler.runtime.db import close_runtime, get_runtime

    url = env.fresh_database()
    close_runtime()
    runtime = get_runtime(url)
    now = datetime.now(UTC).replace(microsecond=0)
    insert_due_schedules(url, n, now)
    env.flush_broker()
    publisher = Publisher(app)
    dispatcher = Dispatcher(
        sessions=runtime.sessions,
        publisher=publisher,
        registered=frozenset({"demo.noop"}),
        settings=Settings(_env_file=None),  # type: ignore[call-arg]
    )
    started = datetime.now(UTC)
    runtime.run(dispatcher.run_once(now + timedelta(milliseconds=10)))
    published = env.queue_length()
    publisher.close()
    close_runtime()
    assert published == n, f"{published} of {n} published"
    return last_queued_s(url, n, started)


def _wait_for_broker(env: Env, n: int, until: float) -> None:
    while env.queue_length() < n and time.monotonic() < until:
        time.sleep(0.05)
    time.sleep(0.5)  # the last batch's `queued` update


def _bound_s(n: int) -> float:
    return 60 + n / 1000


def due_running(env: Env, n: int, ahead_s: float = 5.0) -> tuple[int, float | None]:
    """(a) A running beat; n interval rows due at the same instant T, inserted `ahead_s`
    before it. Returns (runs queued, seconds from T until the last one's `queued_at`)."""
    url = env.fresh_database()
    env.flush_broker()
    beat = start_beat(env, url, env.tmp / f"beat-burst-running-{n}.log")
    try:
        time.sleep(3)
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ahead_s)
        run(
            sql(
                url,
                "INSERT INTO schedules (name, task, interval_seconds, start_at) "
                "SELECT 'due-' || i, 'demo.noop', 3600, $1 FROM generate_series(1, $2) i",
                due,
                n,
            )
        )
        _wait_for_broker(env, n, time.monotonic() + ahead_s + _bound_s(n))
    finally:
        stop(beat)
    return queued_since(url, due)


def due_started_after(env: Env, n: int, ahead_s: float = 20.0) -> tuple[int, float | None]:
    """(b) As a new user would: n one-off rows (`run_at` = T, `next_run_at` left NULL)
    inserted with SQL `ahead_s` before T, then a beat started. Same figure as (a)."""
    url = env.fresh_database()
    env.flush_broker()
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ahead_s)
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, run_at) "
            "SELECT 'once-' || i, 'demo.noop', $1 FROM generate_series(1, $2) i",
            due,
            n,
        )
    )
    beat = start_beat(env, url, env.tmp / f"beat-burst-after-{n}.log")
    try:
        _wait_for_broker(env, n, time.monotonic() + ahead_s + _bound_s(n))
    finally:
        stop(beat)
    return queued_since(url, due)


def queued_since(url: str, since: datetime) -> tuple[int, float | None]:
    """(runs confirmed on the broker, seconds from `since` until the last of them)."""
    rows = run(
        sql(
            url,
            "SELECT count(*) AS runs, extract(epoch FROM max(queued_at) - $1) AS seconds "
            "FROM executions WHERE queued_at IS NOT NULL",
            since,
        )
    )
    seconds = rows[0]["seconds"]
    return int(rows[0]["runs"]), None if seconds is None else float(seconds)


def last_queued_s(url: str, n: int, since: datetime) -> float:
    """Seconds from `since` until the last of the n runs was confirmed on the broker."""
    runs, seconds = queued_since(url, since)
    assert runs == n, f"{runs} of {n} queued"
    assert seconds is not None
    return seconds


ARRANGEMENTS: tuple[tuple[str, bool, Callable[[Env, int], tuple[int, float | None]]], ...] = (
    ("running, inserted 5 s ahead", False, due_running),
    ("started after, one-off rows 20 s ahead", False, due_started_after),
    ("running, inserted 5 s ahead, busy core", True, due_running),
    ("started after, one-off rows 20 s ahead, busy core", True, due_started_after),
)
"""(label, with a busy loop on the second core, measure)"""


def bench_burst_due(env: Env, n: int) -> list[dict[str, Any]]:
    """Every due arrangement for n, each with a kombu batch measured just before it in the
    same conditions (`rate_vs_kombu` > 1: all n on the broker sooner than kombu alone takes
    to publish them, the write-ahead having done the rest before the slot)."""
    rows = []
    goal = GOAL_S.get(n)
    for label, busy, measure in ARRANGEMENTS:
        if busy:
            with busy_core():
                anchor_s = kombu_batch_s(env, n)
                queued, seconds = measure(env, n)
        else:
            anchor_s = kombu_batch_s(env, n)
            queued, seconds = measure(env, n)
        rows.append(
            {
                "n": n,
                "arrangement": label,
                "queued": queued,
                "last_queued_s": None if seconds is None else round(seconds, 3),
                "kombu_batch_s": round(anchor_s, 3),
                "rate_vs_kombu": (
                    round(anchor_s / seconds, 2) if seconds and queued == n else None
                ),
                "goal_s": "-" if goal is None else f"<= {goal}",
                "met": "-" if goal is None else bool(queued == n and (seconds or 0) <= goal),
            }
        )
    return rows


def bench_burst(env: Env, n: int, *, anchors: bool = True) -> dict[str, Any]:
    """The overdue figure against kombu and (with `anchors`) the celery and RedBeat schedulers
    given the same n due entries (the due figures are `bench_burst_due`'s)."""
    anchor_s = kombu_batch_s(env, n)
    overdue = overdue_s(env, n)
    row: dict[str, Any] = {
        "n": n,
        "kombu_batch_s": round(anchor_s, 3),
        "ours_overdue_s": round(overdue, 3),
        "overdue_rate_vs_kombu": round(anchor_s / overdue, 3),
        "overdue_goal_s": "<= 0.7" if n == 10_000 else "-",
        "overdue_met": overdue <= 0.7 if n == 10_000 else "-",
    }
    if anchors:
        celery_s = celery_beat_burst_s(env, n)
        redbeat_s = redbeat_burst_s(env, n)
        row |= {
            "celery_persistent_s": round(celery_s, 3),
            "redbeat_s": round(redbeat_s, 3),
            "speedup_vs_celery_beat": round(celery_s / overdue, 2),
            "speedup_vs_redbeat": round(redbeat_s / overdue, 2),
        }
    return row
