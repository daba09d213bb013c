"""Observability costs: a scrape at 10k monitored schedules, and the overhead of metrics on
tracked tasks (one worker with its metrics port, one without, alternated in the same run)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.env import Env


def bench_scrape(env: Env, n: int = 10_000) -> dict[str, Any]:
    """Refreshing the database series of `n` monitored schedules (each with a success and a
    failure on record: the bounded queries and the rendering, off the scrape path), and one
    scrape of the beat's port over HTTP."""
    from benchmarks.env import run, sql
    from config.settings import Settings
    from scheduler.core.domain import ExecutionStatus
    from scheduler.observability import database_series
    from scheduler.runtime.db import close_runtime, get_runtime

    url = env.fresh_database()
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, interval_seconds, monitored, next_run_at)"
            " SELECT 'mon-' || i, 'demo.noop', 60, true, now() + interval '1 minute'"
            " FROM generate_series(1, $1) i",
            n,
        )
    )
    run(
        sql(
            url,
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
            " status_id, created_at, completed_at)"
            " SELECT gen_random_uuid(), s.id, s.task, '[]', '{}', 'schedule',"
            " now() - k * interval '1 minute', CASE WHEN k = 1 THEN $1::smallint ELSE $2::smallint END,"
            " now() - k * interval '1 minute', now() - k * interval '1 minute'"
            " FROM schedules s CROSS JOIN generate_series(1, 2) k",
            ExecutionStatus.FAILED.id,
            ExecutionStatus.SUCCESS.id,
        )
    )
    run(sql(url, "ANALYZE"))
    source = database_series.DatabaseMetrics(Settings(metrics_schedule_limit=n))
    database_series._database = source
    runtime = get_runtime(url)

    async def refresh() -> None:
        async with runtime.sessions() as session:
            await source.refresh(session)

    refresh_ms: list[float] = []
    for _ in range(5):
        start = time.perf_counter()
        runtime.run(refresh())
        refresh_ms.append((time.perf_counter() - start) * 1000)
    import urllib.request

    from scheduler.observability.health import ObservabilityServer

    server = ObservabilityServer("127.0.0.1", 0, readiness=None).start()
    scrape_ms: list[float] = []
    size = 0
    try:
        for _ in range(20):
            start = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as response:
                size = len(response.read())
            scrape_ms.append((time.perf_counter() - start) * 1000)
    finally:
        server.stop()
        close_runtime()
        database_series._database = None
    return {
        "monitored_schedules": n,
        "series": 3 * n,
        "refresh_ms_median": round(statistics.median(refresh_ms), 1),
        "http_scrape_ms_median": round(statistics.median(scrape_ms), 1),
        "exposition_kb": round(size / 1024, 1),
    }


def bench_metrics_overhead(env: Env, n: int = 500, rounds: int = 3) -> dict[str, Any]:
    """Tracked `demo.noop` throughput of a solo worker with and without its metrics port,
    the two alternated round after round (same database, same broker, same run)."""
    import redis

    from benchmarks.env import insert_queued, send_until_done, start_worker
    from benchmarks.processes import stop

    url = env.fresh_database()
    client = redis.Redis.from_url(env.broker)

    def drain(count: int) -> float:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        insert_queued(url, "demo.noop", ids)
        return send_until_done(client, "demo.noop", ids)

    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(rounds):
            for with_metrics in (False, True):
                env.flush_broker()
                worker = start_worker(
                    url,
                    env.tmp / f"metrics-worker-{with_metrics}.log",
                    settings={"SCHEDULER_WORKER_HTTP_PORT": "0"} if with_metrics else None,
                )
                try:
                    drain(50)  # warm up (and wait for the worker)
                    rates[with_metrics].append(n / drain(n))
                finally:
                    stop(worker)
    finally:
        client.close()
    without = statistics.median(rates[False])
    with_ = statistics.median(rates[True])
    return {
        "tasks": n,
        "without_metrics_per_s": round(without, 1),
        "with_metrics_per_s": round(with_, 1),
        "with_vs_without": round(with_ / without, 3),
    }


def bench_hook_cost(calls: int = 20_000) -> dict[str, Any]:
    """The worker's two metric hooks per run (started, finished), timed in a process of
    their own in multiprocess mode (what a worker with a port does), against the same calls
    with metrics off: the per-run cost, free of the machine's noise."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.observability", "hooks", str(calls)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _hooks_main(calls: int) -> None:
    import tempfile
    from pathlib import Path

    from scheduler.observability import metrics

    def timed() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            metrics.run_started("demo.noop", 1)
            metrics.run_finished("demo.noop", "success", 0.0004)
        return (time.perf_counter() - start) / calls * 1e6

    off = min(timed() for _ in range(3))
    metrics.use_multiprocess_dir(Path(tempfile.mkdtemp(prefix="scheduler-metrics-")))
    on = min(timed() for _ in range(3))
    metrics.remove_multiprocess_dir()
    print(
        json.dumps({"calls": calls, "off_us_per_run": round(off, 2), "on_us_per_run": round(on, 2)})
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["hooks"]:
        _hooks_main(int(sys.argv[2]))
