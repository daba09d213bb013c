"""Steady and sustained load (`--only steady`, `--only sustained`).

steady: 1k every-second + 1k every-minute schedules on one beat, nobody consuming (the broker is
flushed each second). sustained: n every-second schedules for d seconds with a bare consumer
draining the broker: dispatch lag (`queued_at - scheduled_for`), runs expected vs recorded, the
backlog over time (queue depth, rows overdue by more than a second, the lag of the first 10 s
against the last 10 s), CPU seconds of each beat; with one beat, then two sharing the load (no
slot twice, n runs per slot).
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.progress import Progress

from benchmarks.env import Env, console, run, sql, start_beat
from benchmarks.processes import cpu_s, stop
from benchmarks.report import percentile

LAG_P99_GOAL_MS = 100.0
TREND_S = 10
"""The lag of the first and of the last this many seconds of slots, side by side."""
WARMUP_S = 3
"""Slots before the measured window: a beat's first passes at a new load (the first write-ahead,
cold caches) are reported apart, as `warmup_lag_max_ms`."""


def bench_steady(env: Env, duration_s: int) -> dict[str, Any]:
    """1k every-minute + 1k every-second schedules: dispatch lag = queued_at - scheduled_for."""
    url = env.fresh_database()
    env.flush_broker()
    start_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, interval_seconds, start_at) "
            "SELECT 'sec-' || i, 'demo.noop', 1, $1::timestamptz FROM generate_series(1, 1000) i "
            "UNION ALL SELECT 'min-' || i, 'demo.noop', 60, $1::timestamptz FROM generate_series(1, 1000) i",
            start_at,
        )
    )
    beat = start_beat(env, url, env.tmp / "beat-steady.log")
    try:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("steady load", total=duration_s + 5)
            for _ in range(duration_s + 5):
                time.sleep(1)
                env.flush_broker()  # nobody consumes: keep Redis small
                progress.advance(bar)
    finally:
        stop(beat)
    return {"seconds": duration_s, **steady_lags(url, start_at)}


def steady_lags(url: str, start_at: datetime) -> dict[str, Any]:
    """Dispatch lag (`queued_at - scheduled_for`) of every run queued from `start_at` on."""
    rows = run(
        sql(
            url,
            "SELECT extract(epoch FROM queued_at - scheduled_for) * 1000 AS lag_ms "
            "FROM executions WHERE queued_at IS NOT NULL AND scheduled_for >= $1",
            start_at,
        )
    )
    lags = [float(r[0]) for r in rows]
    return {
        "runs": len(lags),
        "lag_p50_ms": round(statistics.median(lags), 1),
        "lag_p99_ms": round(percentile(lags, 0.99), 1),
        "lag_max_ms": round(max(lags), 1),
    }


class Drain:
    """A bare consumer: a thread taking every message off the Redis list, 1,000 at a time,
    and discarding it (no worker, no ack: the broker's list is all there is to drain)."""

    def __init__(self, broker_url: str, queue: str = "celery") -> None:
        import redis

        self.client = redis.Redis.from_url(broker_url)
        self.queue = queue
        self.consumed = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drain", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self.client.pipeline(transaction=True) as pipe:
                pipe.lrange(self.queue, 0, 999)
                pipe.ltrim(self.queue, 1000, -1)
                taken = len(pipe.execute()[0])
            self.consumed += taken
            if not taken:
                time.sleep(0.005)

    def depth(self) -> int:
        return int(self.client.llen(self.queue))

    def stop(self, settle_s: float = 10.0) -> None:
        """Once the queue is empty (or after `settle_s`)."""
        until = time.monotonic() + settle_s
        while self.depth() and time.monotonic() < until:
            time.sleep(0.05)
        self._stopping.set()
        self._thread.join(timeout=5)
        self.client.close()


def _sleep_until(at: datetime) -> None:
    remaining = (at - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


def bench_sustained(env: Env, n: int, duration_s: int, beats: int = 1) -> dict[str, Any]:
    """n every-second schedules, `beats` beat processes, a bare consumer draining the broker;
    figures over `duration_s` seconds of slots after `WARMUP_S` seconds of warm-up."""
    url = env.fresh_database()
    env.flush_broker()
    first_slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    start_at = first_slot + timedelta(seconds=WARMUP_S)
    end_at = start_at + timedelta(seconds=duration_s)
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, interval_seconds, start_at) "
            "SELECT 'every-second-' || i, 'demo.noop', 1, $1 FROM generate_series(1, $2) i",
            first_slot,
            n,
        )
    )
    drain = Drain(env.broker)
    drain.start()
    procs = [
        start_beat(env, url, env.tmp / f"beat-sustained-{n}-{beats}-{i}.log") for i in range(beats)
    ]
    depth: list[int] = []
    overdue: list[int] = []
    try:
        _sleep_until(start_at)
        cpu_before = [cpu_s(p.pid) for p in procs]
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task(f"sustained {n}/s, {beats} beat(s)", total=duration_s)
            for second in range(1, duration_s + 1):
                _sleep_until(start_at + timedelta(seconds=second))
                depth.append(drain.depth())
                overdue.append(_overdue_rows(url))
                progress.advance(bar)
        cpu = [cpu_s(p.pid) - before for p, before in zip(procs, cpu_before, strict=True)]
        time.sleep(2)  # the last slot's publish and `queued` update
        exited = [p.returncode for p in procs if p.poll() is not None]
    finally:
        for proc in procs:
            stop(proc)
        drain.stop()
    row: dict[str, Any] = {"schedules": n, "seconds": duration_s, "beats": beats}
    row |= _lag_figures(url, start_at, end_at, n * duration_s)
    row |= {
        "queue_depth_max": max(depth),
        "queue_depth_last": depth[-1],
        "overdue_rows_max": max(overdue),
        "overdue_rows_last": overdue[-1],
        "messages_consumed": drain.consumed,
        "beat_cpu_s": [round(c, 1) for c in cpu],
        "beat_cpu_share": [round(c / duration_s, 2) for c in cpu],
    }
    row |= _duplicates(url, start_at, end_at)
    # > 0: some runs went out twice (the sweep republishes a run left `pending` with its
    # task id; a worker's claim would run it once)
    row["messages_over_runs"] = drain.consumed - row["runs_total"]
    warmup = run(
        sql(
            url,
            "SELECT extract(epoch FROM max(queued_at - scheduled_for)) * 1000 FROM executions "
            "WHERE scheduled_for < $1",
            start_at,
        )
    )[0][0]
    row["warmup_lag_max_ms"] = None if warmup is None else round(float(warmup), 1)
    row["holds"] = bool(
        row["runs_recorded"] == row["runs_expected"]
        and row["not_queued"] == 0
        and row["lag_p99_ms"] is not None
        and row["lag_p99_ms"] <= LAG_P99_GOAL_MS
        and not row["backlog_grows"]
        and row["duplicate_slots"] == 0
        and not exited
    )
    if exited:
        row["beats_exited"] = exited
    row["queue_depth_per_s"] = depth
    row["overdue_rows_per_s"] = overdue
    return row


def _overdue_rows(url: str) -> int:
    """Enabled rows whose slot is more than a second past and not yet taken by a beat."""
    rows = run(
        sql(
            url,
            "SELECT count(*) FROM schedules WHERE enabled "
            "AND next_run_at < now() - interval '1 second'",
        )
    )
    return int(rows[0][0])


def _lag_figures(url: str, start_at: datetime, end_at: datetime, expected: int) -> dict[str, Any]:
    trend = timedelta(seconds=TREND_S)
    rows = run(
        sql(
            url,
            "WITH w AS (SELECT scheduled_for, "
            "extract(epoch FROM queued_at - scheduled_for) * 1000 AS lag FROM executions "
            "WHERE scheduled_for >= $1 AND scheduled_for < $2) "
            "SELECT count(*) AS recorded, count(lag) AS queued, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50, "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99, max(lag) AS max, "
            "count(*) FILTER (WHERE lag > $5) AS late, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) FILTER (WHERE scheduled_for < $3) "
            "AS first_p50, "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FILTER (WHERE scheduled_for < $3) "
            "AS first_p99, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) FILTER (WHERE scheduled_for >= $4) "
            "AS last_p50, "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FILTER (WHERE scheduled_for >= $4) "
            "AS last_p99 FROM w",
            start_at,
            end_at,
            start_at + trend,
            end_at - trend,
            LAG_P99_GOAL_MS,
        )
    )[0]

    def ms(key: str) -> float | None:
        return None if rows[key] is None else round(float(rows[key]), 1)

    first, last = ms("first_p50"), ms("last_p50")
    return {
        "runs_expected": expected,
        "runs_recorded": int(rows["recorded"]),
        "not_queued": int(rows["recorded"]) - int(rows["queued"]),
        "lag_p50_ms": ms("p50"),
        "lag_p99_ms": ms("p99"),
        "lag_max_ms": ms("max"),
        f"runs_over_{LAG_P99_GOAL_MS:.0f}ms": int(rows["late"]),
        f"lag_p50_first_{TREND_S}s_ms": first,
        f"lag_p50_last_{TREND_S}s_ms": last,
        f"lag_p99_first_{TREND_S}s_ms": ms("first_p99"),
        f"lag_p99_last_{TREND_S}s_ms": ms("last_p99"),
        "backlog_grows": first is None or last is None or last > first + LAG_P99_GOAL_MS,
    }


def _duplicates(url: str, start_at: datetime, end_at: datetime) -> dict[str, Any]:
    """Slots written more than once (the unique constraint says 0) and runs per slot."""
    dup = run(
        sql(
            url,
            "SELECT count(*) FROM (SELECT 1 FROM executions GROUP BY schedule_id, scheduled_for "
            "HAVING count(*) > 1) d",
        )
    )
    per_slot = run(
        sql(
            url,
            "SELECT min(c) AS least, max(c) AS most FROM (SELECT count(*) AS c FROM executions "
            "WHERE scheduled_for >= $1 AND scheduled_for < $2 GROUP BY scheduled_for) s",
            start_at,
            end_at,
        )
    )[0]
    totals = run(sql(url, "SELECT count(*) AS runs, count(queued_at) AS queued FROM executions"))[0]
    return {
        "duplicate_slots": int(dup[0][0]),
        "runs_per_slot_min": per_slot["least"],
        "runs_per_slot_max": per_slot["most"],
        "runs_total": int(totals["runs"]),
        "runs_queued_total": int(totals["queued"]),
    }


def bench_sustained_all(
    env: Env, n: int, duration_s: int, step_down: tuple[int, ...] = ()
) -> dict[str, Any]:
    """One beat then two at n every-second schedules for `duration_s` (quick 2,000/s for 20 s;
    full 10,000/s for 60 s); when one beat does not hold n, the rate steps down through
    `step_down` (full: 5,000, 2,000, 1,000) to the highest that holds lag p99 <= 100 ms with
    every run recorded and no backlog growth."""
    rows = [bench_sustained(env, n, duration_s, beats=1), bench_sustained(env, n, duration_s, 2)]
    held: int | None = n if rows[0]["holds"] else None
    if held is None:
        for lower in step_down:
            row = bench_sustained(env, lower, duration_s, beats=1)
            rows.append(row)
            if row["holds"]:
                held = lower
                break
    return {"rows": rows, "highest_rate_held_one_beat": held}
