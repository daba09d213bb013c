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
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from rich.progress import Progress
from rich.table import Table

from benchmarks.processes import rss_mb, stop
from benchmarks.redbeat_anchor import configure_redbeat, redbeat_scale
from scheduler.cli.format import console as cli_console

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
console = cli_console()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def sql(url: str, statement: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn(url))
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


class Env:
    """Services, a fresh migrated database per benchmark, and the broker."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
        self.tmp.chmod(0o755)
        self.embedded: Any = None
        db, broker = os.environ.get("BENCH_DATABASE_URL"), os.environ.get("BENCH_BROKER_URL")
        if not (db and broker):
            from scheduler.services import EmbeddedServices

            self.embedded = EmbeddedServices(self.tmp / "state", durable=False)
            urls = self.embedded.up()
            db, broker = db or urls.database_url, broker or urls.broker_url
        from scheduler.services import normalize_database_url

        self.server = normalize_database_url(db)
        self.broker = broker
        os.environ["BROKER_URL"] = broker
        os.environ["SCHEDULER_STATE_DIR"] = str(self.tmp / "state")
        self.databases: list[str] = []

    def url(self, name: str) -> str:
        base, _, query = self.server.partition("?")
        root = base.rsplit("/", 1)[0]
        return f"{root}/{name}" + (f"?{query}" if query else "")

    def fresh_database(self) -> str:
        from scheduler import migrate

        name = f"bench_{uuid.uuid4().hex[:10]}"
        run(sql(self.url("postgres"), f'CREATE DATABASE "{name}"'))
        self.databases.append(name)
        url = self.url(name)
        run(migrate.upgrade(url))
        os.environ["DATABASE_URL"] = url
        from config.settings import get_settings

        get_settings.cache_clear()
        return url

    def flush_broker(self) -> None:
        import redis

        client = redis.Redis.from_url(self.broker)
        client.flushdb()
        client.close()

    def queue_length(self, queue: str = "celery") -> int:
        import redis

        client = redis.Redis.from_url(self.broker)
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    def close(self) -> None:
        from scheduler.db import close_runtime

        close_runtime()
        for name in self.databases:
            try:
                run(sql(self.url("postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # cleanup is best effort
                console.print(f"could not drop {name}: {exc}")
        if self.embedded is not None:
            self.embedded.down()
        shutil.rmtree(self.tmp, ignore_errors=True)


def machine_info(env: Env) -> dict[str, Any]:
    import celery
    import kombu
    import sqlalchemy

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = run(sql(env.url("postgres"), "SHOW server_version"))[0][0]
    import redis

    client = redis.Redis.from_url(env.broker)
    redis_version = client.info()["redis_version"]
    client.close()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": pg,
        "redis": redis_version,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }


# --- dispatch burst -----------------------------------------------------------------------


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


def bench_burst(env: Env, n: int) -> dict[str, Any]:
    from config.celery import app
    from config.settings import Settings
    from scheduler.db import close_runtime, get_runtime
    from scheduler.dispatcher import Dispatcher
    from scheduler.publisher import Publisher

    # anchor: the same messages (built beforehand) published by kombu in one producer
    # batch on a held connection: the broker's own pace through kombu
    env.flush_broker()
    built = [
        app.amqp.as_task_v2(str(uuid.uuid4()), "demo.noop", args=[], kwargs={"execution_id": "x"})
        for _ in range(n)
    ]
    with app.connection_for_write() as connection:
        producer = connection.Producer(serializer="json")
        producer.publish({}, exchange="", routing_key="warm-up", retry=False)
        start = time.perf_counter()
        with producer.batch(max_size=1000):
            for headers, properties, body, _ in built:
                producer.publish(
                    body, exchange="", routing_key="celery", headers=headers, retry=False,
                    **properties,
                )  # fmt: skip
        anchor_s = time.perf_counter() - start
    assert env.queue_length() == n

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
    # as for the due case: from the start until the last run is on the broker (its
    # `queued_at`, taken after the push), not until the last `queued` update is written
    started = datetime.now(UTC)
    runtime.run(dispatcher.run_once(now + timedelta(milliseconds=10)))
    published = env.queue_length()
    publisher.close()
    close_runtime()
    assert published == n, f"{published} of {n} published"
    overdue_s = last_queued_s(url, n, started)

    due_s = bench_burst_due(env, n)
    celery_s = bench_celery_beat(env, n)
    redbeat_s = bench_redbeat_burst(env, n)
    return {
        "n": n,
        "kombu_batch_s": round(anchor_s, 3),
        "ours_due_s": round(due_s, 3),
        "rate_vs_kombu": round(anchor_s / due_s, 3),
        "ours_overdue_s": round(overdue_s, 3),
        "overdue_rate_vs_kombu": round(anchor_s / overdue_s, 3),
        "celery_persistent_s": round(celery_s, 3),
        "redbeat_s": round(redbeat_s, 3),
        "speedup_vs_celery_beat": round(celery_s / overdue_s, 2),
        "speedup_vs_redbeat": round(redbeat_s / overdue_s, 2),
    }


def bench_burst_due(env: Env, n: int) -> float:
    """A running beat, n schedules due at the same instant T (inserted 5 s before): seconds
    from T until the last of them is on the broker (its `queued_at`, taken after the push)."""
    url = env.fresh_database()
    env.flush_broker()
    beat = start_beat(env, url, env.tmp / f"beat-burst-{n}.log")
    try:
        time.sleep(3)
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        run(
            sql(
                url,
                "INSERT INTO schedules (name, task, interval_seconds, start_at) "
                "SELECT 'due-' || i, 'demo.noop', 3600, $1 FROM generate_series(1, $2) i",
                due,
                n,
            )
        )
        deadline = time.monotonic() + 60
        while env.queue_length() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the last batch's `queued` update
    finally:
        stop(beat)
    return last_queued_s(url, n, due)


def last_queued_s(url: str, n: int, since: datetime) -> float:
    """Seconds from `since` until the last of the n runs was confirmed on the broker."""
    rows = run(
        sql(
            url,
            "SELECT count(*) AS runs, extract(epoch FROM max(queued_at) - $1) AS seconds "
            "FROM executions WHERE queued_at IS NOT NULL",
            since,
        )
    )
    assert rows[0]["runs"] == n, f"{rows[0]['runs']} of {n} queued"
    return float(rows[0]["seconds"])


def _redbeat_scheduler(env: Env, n: int, last_run_at: datetime | None) -> Any:
    """A RedBeat scheduler over n saved entries (due now when `last_run_at` is None)."""
    from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry

    from config.celery import app

    env.flush_broker()
    configure_redbeat(app, env.broker)
    for i in range(n):
        entry = RedBeatSchedulerEntry(f"rb-{i}", "demo.noop", timedelta(hours=1), app=app)
        entry.last_run_at = last_run_at
        entry.save()
    return RedBeatScheduler(app, lazy=False)


def _ticks_until_sent(env: Env, scheduler: Any, n: int, bound_s: float = 120) -> float:
    """Tick a Celery scheduler until n messages are on the broker, then close it. Past
    `bound_s` the time is extrapolated from the rate reached."""
    start = time.perf_counter()
    while env.queue_length() < n and time.perf_counter() - start < bound_s:
        scheduler.tick()
    elapsed = time.perf_counter() - start
    sent = env.queue_length()
    scheduler.close()
    return elapsed * n / max(sent, 1)


def bench_redbeat_burst(env: Env, n: int) -> float:
    """RedBeat given the same n entries, all due: time until all are on the broker."""
    scheduler = _redbeat_scheduler(env, n, None)
    elapsed = _ticks_until_sent(env, scheduler, n)
    env.flush_broker()
    return elapsed


def bench_celery_beat(env: Env, n: int) -> float:
    """celery's PersistentScheduler with n entries, all due: time until all are sent
    (bounded at 120 s; past that the time is extrapolated from the rate reached)."""
    import logging

    from celery.beat import PersistentScheduler

    from config.celery import app

    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    env.flush_broker()
    schedule_file = env.tmp / f"celerybeat-{n}"
    app.conf.beat_schedule = {
        f"entry-{i}": {"task": "demo.noop", "schedule": 3600.0} for i in range(n)
    }
    try:
        scheduler = PersistentScheduler(app, schedule_filename=str(schedule_file), lazy=False)
        past = datetime.now(UTC) - timedelta(hours=2)
        for entry in scheduler.schedule.values():
            entry.last_run_at = past
        scheduler._heap = None
        return _ticks_until_sent(env, scheduler, n)
    finally:
        app.conf.beat_schedule = {}
        for path in env.tmp.glob(f"celerybeat-{n}*"):
            path.unlink()


# --- change pickup, idle tick, RSS ---------------------------------------------------------


def start_beat(env: Env, url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "beat", "-l", "WARNING"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "BROKER_URL": env.broker},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


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
        "seconds": duration_s,
        "runs": len(lags),
        "lag_p50_ms": round(statistics.median(lags), 1),
        "lag_p99_ms": round(percentile(lags, 0.99), 1),
        "lag_max_ms": round(max(lags), 1),
    }


def bench_scale(env: Env, n: int) -> dict[str, Any]:
    """Idle pass (what a beat does when it wakes and nothing is due) and beat RSS."""
    from config.celery import app
    from config.settings import Settings
    from scheduler.db import close_runtime, get_runtime
    from scheduler.dispatcher import Dispatcher
    from scheduler.publisher import Publisher

    url = env.fresh_database()
    later = datetime.now(UTC) + timedelta(days=1)
    insert_due_schedules(url, n, later)
    run(sql(url, "ANALYZE schedules"))
    close_runtime()
    runtime = get_runtime(url)
    dispatcher = Dispatcher(
        sessions=runtime.sessions,
        publisher=Publisher(app),
        registered=frozenset({"demo.noop"}),
        settings=Settings(_env_file=None),  # type: ignore[call-arg]
    )
    for _ in range(5):
        runtime.run(dispatcher.run_once(datetime.now(UTC)))
    samples = []
    for _ in range(100):
        start = time.perf_counter()
        runtime.run(dispatcher.run_once(datetime.now(UTC)))
        samples.append((time.perf_counter() - start) * 1000)
    close_runtime()
    beat = start_beat(env, url, env.tmp / f"beat-scale-{n}.log")
    try:
        time.sleep(6)
        rss = rss_mb(beat.pid)
    finally:
        stop(beat)
    redbeat = redbeat_scale(env.broker, n, env.tmp)
    return {
        "schedules": n,
        "idle_tick_ms_p50": round(statistics.median(samples), 2),
        "idle_tick_ms_p99": round(percentile(samples, 0.99), 2),
        "redbeat_idle_tick_ms_p50": round(redbeat["redbeat_idle_tick_ms_p50"], 2),
        "beat_rss_mb": round(rss, 1),
        "redbeat_rss_mb": round(redbeat["redbeat_rss_mb"], 1),
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
    from scheduler.db import close_runtime, get_runtime
    from scheduler.repository import SchedulerRepository as repo

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
            await repo.history(session, schedule="hist-500", limit=50)

    async def stats() -> None:
        async with runtime.sessions() as session:
            await repo.stats(session, since=datetime.now(UTC) - timedelta(hours=24))

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


def table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = Table(title=title, header_style="bold")
    for key in rows[0]:
        t.add_column(key, overflow="fold")
    for row in rows:
        t.add_row(*(str(v) for v in row.values()))
    console.print(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="Bigger sizes and more repeats.")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="burst brokers pickup steady scale workers pools history observability web apply"
        " partitions",
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
            results["burst"] = [bench_burst(env, n) for n in (1_000, 10_000)]
            table(
                "dispatch burst: n due at once (due: beat running; overdue: found already due)",
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
            results["steady"] = [bench_steady(env, 120 if args.full else 30)]
            table("steady load: 1k every-second + 1k every-minute schedules", results["steady"])
        if "scale" in only:
            sizes = (1_000, 10_000, 100_000)
            results["scale"] = [bench_scale(env, n) for n in sizes]
            table("scale: idle pass and beat RSS", results["scale"])
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
