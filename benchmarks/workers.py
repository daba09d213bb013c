"""Workers (`--only workers`, `--only pools`): tracked `demo.noop` throughput against the
anchors in the same worker, a bare Celery no-op (`bench.bare_noop`) and the seed's pattern
(`bench.seed_pattern`: an event loop and engine per task); and tracked vs bare on every pool.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from rich.progress import Progress

from benchmarks.env import Env, console, insert_queued, run, send_until_done, sql, start_worker
from benchmarks.processes import stop


def bench_workers(
    env: Env,
    n: int,
    pool: str = "solo",
    concurrency: int = 1,
    *,
    seed: bool = True,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    import redis

    from scheduler.core.domain import ExecutionStatus

    url = env.fresh_database()
    env.flush_broker()
    worker = start_worker(url, env.tmp / "worker.log", pool, concurrency, cpus=cpus)
    client = redis.Redis.from_url(env.broker)

    def drain(name: str, count: int, with_rows: bool) -> float:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        if with_rows:
            insert_queued(url, name, ids)
        start = time.perf_counter()
        send_until_done(client, name, ids)
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
                "AND status_id = $1",
                ExecutionStatus.SUCCESS.id,
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
    """Tracked vs bare no-op on every pool, each pool's worker on the same machine and broker:
    first with every process sharing every core, then (embedded services, 2+ cores) with
    PostgreSQL, Redis and this driver on a core of their own and the worker on the others,
    as where the database has a host of its own: what the worker's bookkeeping costs it."""
    rows = [_pool_row(env, n, pool, "shared") for pool in POOL_RUNS]
    with env.services_apart() as cpus:
        if cpus is None:
            console.print("pools, database apart: skipped (services given by URL, or one CPU)")
            return rows
        rows += [_pool_row(env, n, pool, "database apart", cpus) for pool in POOL_RUNS]
    return rows


def _pool_row(
    env: Env,
    n: int,
    spec: tuple[str, int, float | None],
    cores: str,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    pool, concurrency, goal = spec
    row = bench_workers(env, n, pool=pool, concurrency=concurrency, seed=False, cpus=cpus)
    where = cores if cpus is None else f"worker on {len(cpus)} of {len(cpus) + 1}, {cores}"
    goal_text = "-" if goal is None else f">= {goal}"
    return {"pool": row.pop("pool"), "cores": where, **row, "goal": goal_text}
