"""Side-by-side benchmarks: `make bench` (quick) or `make bench FULL=1`.

Every headline figure is a ratio against an anchor measured in the same run on the same
machine. Results are printed as tables and written to benchmarks/results/latest.json.
Services: embedded PostgreSQL + Redis in a temporary directory, unless BENCH_DATABASE_URL
and BENCH_BROKER_URL are set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from rich.progress import Progress

from benchmarks.burst import last_queued_s
from benchmarks.env import (
    RESULTS,
    ROOT,
    Env,
    console,
    dsn,
    machine_info,
    percentile,
    run,
    sql,
    start_beat,
    table,
    vertical_table,
)
from benchmarks.processes import stop

__all__ = ["Env", "last_queued_s", "main", "percentile", "run", "sql"]
"""Also imported from here by benchmarks.brokers (the shared pieces live in benchmarks.env)."""

# --- change pickup --------------------------------------------------------------------------


def bench_pickup(env: Env, inserts: int) -> dict[str, Any]:
    url = env.fresh_database()
    env.flush_broker()
    beat = start_beat(env, url, env.tmp / "beat-pickup.log")
    try:
        time.sleep(3)
        lags: list[float] = []

        async def measure() -> None:
            conn = await asyncpg.connect(dsn(url))
            try:
                for i in range(inserts):
                    before = env.queue_length()
                    start = time.perf_counter()
                    await conn.execute(
                        "INSERT INTO schedules (name, task, interval_seconds) "
                        f"VALUES ('pickup-{i}', 'demo.noop', 86400)"
                    )
                    while env.queue_length() <= before:
                        if time.perf_counter() - start > 10:
                            raise RuntimeError("insert not dispatched within 10 s")
                        await asyncio.sleep(0.001)
                    lags.append((time.perf_counter() - start) * 1000)
                    await asyncio.sleep(0.02)
            finally:
                await conn.close()

        run(measure())
    finally:
        stop(beat)
    return {
        "inserts": inserts,
        "p50_ms": round(statistics.median(lags), 1),
        "p99_ms": round(percentile(lags, 0.99), 1),
        "max_ms": round(max(lags), 1),
    }


# --- workers ------------------------------------------------------------------------------


def bench_workers(
    env: Env, n: int, pool: str = "solo", concurrency: int = 1, *, seed: bool = True
) -> dict[str, Any]:
    import redis

    from config.celery import app

    url = env.fresh_database()
    env.flush_broker()
    log = env.tmp / "worker.log"
    with log.open("ab") as handle:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config.celery",
                "worker",
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-l",
                "WARNING",
                "-I",
                "benchmarks.tasks",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = redis.Redis.from_url(env.broker)

    def drain(name: str, count: int, with_rows: bool) -> float:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        if with_rows:
            run(
                sql(
                    url,
                    "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
                    "SELECT unnest($1::uuid[]), $2, '[]', '{}', 'manual', 2",
                    ids,
                    name,
                )
            )
        key = f"bench-marker-{uuid.uuid4()}"
        start = time.perf_counter()
        with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
            for execution_id in ids:
                app.send_task(
                    name, kwargs={"execution_id": execution_id}, task_id=execution_id,
                    producer=producer,
                )  # fmt: skip
            app.send_task("bench.marker", args=(key,), producer=producer)
        while not client.get(key):
            if time.perf_counter() - start > 300:
                raise RuntimeError(f"{name}: workers did not finish")
            time.sleep(0.002)
        while with_rows and not finished(ids):  # outcomes are written after the ack
            if time.perf_counter() - start > 300:
                raise RuntimeError(f"{name}: outcomes not recorded")
            time.sleep(0.002)
        return time.perf_counter() - start

    def finished(ids: list[str]) -> bool:
        rows = run(
            sql(
                url,
                "SELECT count(*) FROM executions WHERE id = ANY($1::uuid[]) AND completed_at "
                "IS NULL",
                ids,
            )
        )
        return int(rows[0][0]) == 0

    try:
        drain("bench.bare_noop", 50, False)  # also waits until the worker is up
        drain("demo.noop", 50, True)
        rounds = {"bare": [], "tracked": [], "seed": []}  # type: dict[str, list[float]]
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task(f"worker throughput ({pool})", total=9 if seed else 6)
            for _ in range(3):
                rounds["bare"].append(n / drain("bench.bare_noop", n, False))
                progress.advance(bar)
                rounds["tracked"].append(n / drain("demo.noop", n, True))
                progress.advance(bar)
                if seed:
                    rounds["seed"].append(
                        max(1, n // 5) / drain("bench.seed_pattern", max(1, n // 5), True)
                    )
                    progress.advance(bar)
        durations = run(
            sql(
                url,
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                "completed_at - started_at) * 1000) FROM executions WHERE task = 'demo.noop' "
                "AND status_id = 5",
            )
        )
    finally:
        stop(worker)
        client.close()
    bare = statistics.median(rounds["bare"])
    tracked = statistics.median(rounds["tracked"])
    per_run_ms = 1000 / tracked - 1000 / bare
    result: dict[str, Any] = {
        "pool": f"{pool} x{concurrency}",
        "tasks": n,
        "bare_per_s": round(bare, 1),
        "tracked_per_s": round(tracked, 1),
        "tracked_vs_bare": round(tracked / bare, 3),
        "bookkeeping_ms_per_run": round(per_run_ms, 3),
        "tracked_in_task_median_ms": round(float(durations[0][0] or 0), 3),
    }
    if seed:
        seed_rate = statistics.median(rounds["seed"])
        result["seed_pattern_per_s"] = round(seed_rate, 1)
        result["tracked_vs_seed"] = round(tracked / seed_rate, 2)
    return result


POOL_RUNS = (("prefork", 2, 0.8), ("threads", 4, 0.7), ("solo", 1, None), ("gevent", 8, 0.7),
             ("eventlet", 8, None))  # fmt: skip
"""(pool, concurrency, goal for tracked / bare)"""


def bench_pools(env: Env, n: int) -> list[dict[str, Any]]:
    """Tracked vs bare no-op on every pool, each pool's worker on the same machine and broker."""
    rows = []
    for pool, concurrency, goal in POOL_RUNS:
        row = bench_workers(env, n, pool=pool, concurrency=concurrency, seed=False)
        row["goal"] = "-" if goal is None else f">= {goal}"
        rows.append(row)
    return rows


# --- history and stats --------------------------------------------------------------------


def bench_history(env: Env, rows: int) -> dict[str, Any]:
    from scheduler.runtime.db import close_runtime, get_runtime
    from scheduler.store.history import HistoryStore

    url = env.fresh_database()
    start = time.perf_counter()
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, interval_seconds) "
            "SELECT 'hist-' || i, 'demo.noop', 60 FROM generate_series(1, 1000) i",
        )
    )
    run(
        sql(
            url,
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for, "
            "status_id, created_at, started_at, completed_at, duration_ms, attempt) "
            "SELECT gen_random_uuid(), 1 + i % 1000, 'demo.noop', '[]', '{}', 'schedule', "
            "now() - (i || ' seconds')::interval, "
            "CASE WHEN i % 50 = 0 THEN 6 ELSE 5 END, now() - (i || ' seconds')::interval, "
            "now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval, "
            "(i * 7) % 1000, 1 FROM generate_series(1, $1) i",
            rows,
        )
    )
    run(sql(url, "VACUUM ANALYZE executions"))
    fill_s = time.perf_counter() - start
    close_runtime()
    runtime = get_runtime(url)

    async def history() -> None:
        async with runtime.sessions() as session:
            await HistoryStore.history(session, schedule="hist-500", limit=50)

    async def stats() -> None:
        async with runtime.sessions() as session:
            await HistoryStore.stats(session, since=datetime.now(UTC) - timedelta(hours=24))

    def timed(fn: Callable[[], Coroutine[Any, Any, None]], times: int) -> list[float]:
        runtime.run(fn())
        out = []
        for _ in range(times):
            t = time.perf_counter()
            runtime.run(fn())
            out.append((time.perf_counter() - t) * 1000)
        return out

    h = timed(history, 30)
    s = timed(stats, 7)
    close_runtime()
    return {
        "executions": rows,
        "fill_s": round(fill_s, 1),
        "history_by_schedule_ms_p50": round(statistics.median(h), 2),
        "stats_24h_ms_p50": round(statistics.median(s), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="Bigger sizes and more repeats.")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="burst brokers pickup steady sustained scale workers pools history observability "
        "web apply partitions",
    )
    args = parser.parse_args()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one migration per benchmark
    only = set(
        args.only
        or [
            "burst",
            "brokers",
            "pickup",
            "steady",
            "sustained",
            "scale",
            "workers",
            "pools",
            "history",
            "observability",
            "web",
            "apply",
            "partitions",
        ]
    )
    env = Env()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "full": args.full}
    try:
        results["machine"] = machine_info(env)
        console.print(results["machine"])
        if "burst" in only:
            from benchmarks.burst import bench_burst, bench_burst_due

            sizes = (1_000, 10_000, 100_000) if args.full else (1_000, 10_000)
            results["burst_due"] = [row for n in sizes for row in bench_burst_due(env, n)]
            table(
                "burst due: n due at the same instant, seconds from the slot to the last on "
                "the broker (kombu batch measured just before, same conditions)",
                results["burst_due"],
            )
            results["burst"] = [bench_burst(env, n, anchors=n <= 10_000) for n in sizes]
            table(
                "burst overdue: n found already due by one pass, vs kombu, celery beat, RedBeat",
                results["burst"],
            )
        if "brokers" in only:
            from benchmarks.brokers import amqp_url, bench_broker_burst, bench_broker_steady

            if amqp_url() is None:
                console.print("RabbitMQ rows skipped: set BENCH_AMQP_URL (or TEST_AMQP_URL)")
            results["broker_burst"] = bench_broker_burst(env, 10_000)
            table(
                "broker burst: 10k due at once, confirmed by the broker, vs a send_task loop",
                results["broker_burst"],
            )
            results["broker_steady"] = bench_broker_steady(env, 60 if args.full else 20)
            table(
                "broker steady: 1k every-second + 1k every-minute schedules",
                results["broker_steady"],
            )
        if "pickup" in only:
            results["pickup"] = [bench_pickup(env, 200 if args.full else 40)]
            table("change pickup: raw INSERT -> message on the broker", results["pickup"])
        if "steady" in only:
            from benchmarks.sustained import bench_steady

            results["steady"] = [bench_steady(env, 120 if args.full else 30)]
            table("steady load: 1k every-second + 1k every-minute schedules", results["steady"])
        if "sustained" in only:
            from benchmarks.sustained import bench_sustained_all

            results["sustained"] = bench_sustained_all(env, args.full)
            held = results["sustained"]["highest_rate_held_one_beat"]
            vertical_table(
                "sustained: n every-second schedules, a bare consumer draining the broker "
                f"(highest rate held by one beat: {f'{held}/s' if held else 'none of those tried'})",
                results["sustained"]["rows"],
                skip=("queue_depth_per_s", "overdue_rows_per_s"),
            )
        if "scale" in only:
            from benchmarks.scale import bench_scale_all, print_plans

            results["scale"] = bench_scale_all(env, args.full)
            table("scale: idle pass and beat RSS", results["scale"]["rows"])
            print_plans(results["scale"]["plans"])
        if "workers" in only:
            n = 2000 if args.full else 500
            results["workers"] = [
                bench_workers(env, n),
                bench_workers(env, n, pool="prefork", concurrency=2),
            ]
            table(
                "workers: tracked vs bare Celery vs the seed pattern, same worker",
                results["workers"],
            )
        if "pools" in only:
            results["pools"] = bench_pools(env, 2000 if args.full else 500)
            table("pools: tracked vs bare Celery no-op, per pool", results["pools"])
        if "history" in only:
            results["history"] = [bench_history(env, 1_000_000)]
            table("history and stats at 1M executions", results["history"])
        if "observability" in only:
            from benchmarks.observability import (
                bench_hook_cost,
                bench_metrics_overhead,
                bench_scrape,
            )

            results["scrape"] = [bench_scrape(env, 10_000)]
            table("metrics: a scrape at 10k monitored schedules", results["scrape"])
            results["metrics_hooks"] = [bench_hook_cost()]
            table("metrics: the worker's hooks per run (us)", results["metrics_hooks"])
            overhead = bench_metrics_overhead(
                env, 2000 if args.full else 500, 5 if args.full else 3
            )
            results["metrics_overhead"] = [overhead]
            table("metrics: tracked tasks with vs without metrics", results["metrics_overhead"])
        if "web" in only:
            from benchmarks.web import bench_web

            n_schedules, n_runs = (10_000, 1_000_000) if args.full else (1_000, 100_000)
            results["web"] = bench_web(env, n_schedules, n_runs, repeats=30 if args.full else 10)
            table("dashboard: server time (Server-Timing), page weight, first load", results["web"])
        if "apply" in only:
            from benchmarks.apply import bench_apply

            results["apply"] = bench_apply(env, 100_000 if args.full else 10_000)
            table("scheduler apply FILE.yaml: seconds per CLI process", results["apply"])
        if "partitions" in only:
            from benchmarks.partitions import bench_partitions, report

            rows, schedules, churn = (10_000_000, 10_000, 7) if args.full else (1_000_000, 1_000, 3)
            results["partitions"] = bench_partitions(env, rows, schedules, churn)
            shown, plans = report(results["partitions"])
            table(
                f"executions partitioned vs plain: {rows:,} runs, {schedules:,} schedules, 30 days",
                shown,
            )
            console.print("\n".join(plans))
    finally:
        env.close()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
        console.print(f"results written to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
