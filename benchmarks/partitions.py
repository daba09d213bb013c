"""History at scale: the partitioned `executions` (revision 0009) side by side with the plain
table (revision 0008) in the same run, on the same rows.

Quick (`make bench`): 1M runs over 1,000 schedules and 30 days; `--full`: 10M over 10,000.
Measured on each side: `history --schedule X --limit 50` and `stats --since 24h` (the
repository's own queries), pruning the oldest day (dropping its partition vs a batched DELETE),
the beat's run insert (batches of 1,000 through the statement of
`SchedulerRepository.insert_executions`), the worker's claim + finish (its two statements),
and table + index size after days of churn (the oldest day pruned, a new day written). The
plans of the partitioned reads are printed: which partitions each one reads.

Alone: `python -m benchmarks --only partitions [--full]`.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks.env import Env, dsn
from scheduler.core.domain import NON_TERMINAL, ExecutionStatus

PENDING = ExecutionStatus.PENDING.id
QUEUED = ExecutionStatus.QUEUED.id
SUCCESS = ExecutionStatus.SUCCESS.id
OUTCOMES = ", ".join(
    str(s.id)
    for s in [ExecutionStatus.SUCCESS] * 18 + [ExecutionStatus.FAILED, ExecutionStatus.SKIPPED]
)
"""The seeded runs' statuses, one in 20 failed and one in 20 skipped."""
UNFINISHED = ", ".join(str(i) for i in sorted(s.id for s in NON_TERMINAL))
DAYS = 30
SEED = """
INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for, status_id,
                        created_at, queued_at, started_at, completed_at, duration_ms, attempt)
SELECT scheduler_slot_id(sid, slot), sid, 'demo.noop', '[]', '{}', 'schedule', slot,
       (ARRAY[{outcomes}])[1 + g % 20]::smallint,
       slot, slot, slot, slot + interval '40 ms', 40, 1
FROM (SELECT g, 1 + g % $1 AS sid,
             $3::timestamptz - (g / $1) * $2::float8 * interval '1 second' AS slot
      FROM generate_series($4::bigint, $5::bigint) g) s
""".replace("{outcomes}", OUTCOMES)
INSERT = (
    "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
    " status_id, created_at) SELECT id, schedule_id, 'demo.noop', '[]'::jsonb, '{{}}'::jsonb,"
    " 'schedule', scheduled_for, {status}, now() FROM unnest($1::uuid[], $2::bigint[],"
    " $3::timestamptz[]) AS r(id, schedule_id, scheduled_for) ON CONFLICT ({target}) DO NOTHING"
    " RETURNING id"
)
PLAIN_DELETE = (
    "DELETE FROM executions WHERE id IN (SELECT id FROM executions WHERE created_at < $1"
    f" AND status_id NOT IN ({UNFINISHED}) LIMIT 5000)"
)
SIZE = (
    "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint"
    " FROM pg_partition_tree('executions')"
)


def _slot_function() -> str:
    module = importlib.import_module("migrations.versions.0009_partitioned_executions")
    return str(module.SLOT_ID_FUNCTION)


class Side:
    """One database: `partitioned` (head) or plain (revision 0008)."""

    def __init__(self, url: str, *, partitioned: bool) -> None:
        self.url = url
        self.partitioned = partitioned
        self.label = "partitioned" if partitioned else "plain"
        self.target = "id" if partitioned else "schedule_id, scheduled_for"
        self.conn: asyncpg.Connection | None = None
        self.engine: Any = None
        self.sessions: Any = None

    async def open(self) -> None:
        from scheduler.runtime.db import create_engine, session_factory

        self.conn = await asyncpg.connect(dsn(self.url))
        self.engine = create_engine(self.url, pool_size=2, max_overflow=0)
        self.sessions = session_factory(self.engine)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self.engine is not None:
            await self.engine.dispose()

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None
        return self.conn

    async def make_days(self, first: datetime, last: datetime) -> None:
        """Daily partitions covering [first, last) (the migration's own ones dropped first)."""
        if not self.partitioned:
            return
        from scheduler.store import partitions
        from scheduler.store.partitions import Interval

        async with self.sessions() as session, session.begin():
            for p in await partitions.list_partitions(session):
                if not p.is_default and p.rows_estimate <= 0 and p.name.startswith("executions_w"):
                    await partitions.drop_partition(session, p.name)
            day = partitions.period_start(first, Interval.DAY)
            existing = await partitions.list_partitions(session)
            while day < last:
                if not partitions.overlaps(day, day + timedelta(days=1), existing):
                    await partitions.create_partition(
                        session, day, day + timedelta(days=1), Interval.DAY
                    )
                day += timedelta(days=1)

    async def fill(self, rows: int, schedules: int, now: datetime) -> float:
        started = time.perf_counter()
        if not self.partitioned:
            await self.c.execute(_slot_function())
        await self.c.execute(
            "INSERT INTO schedules (name, task, interval_seconds)"
            " SELECT 's-' || i, 'demo.noop', 60 FROM generate_series(1, $1) i",
            schedules,
        )
        await self.make_days(now - timedelta(days=DAYS + 1), now + timedelta(days=8))
        step_s = DAYS * 86400 / (rows / schedules)
        chunk = 250_000
        for first in range(1, rows + 1, chunk):
            await self.c.execute(SEED, schedules, step_s, now, first, min(first + chunk - 1, rows))
        await self.c.execute("VACUUM ANALYZE executions")
        return time.perf_counter() - started

    async def insert(self, runs: list[tuple[Any, int, datetime]], status: int = PENDING) -> int:
        statement = INSERT.format(target=self.target, status=status)
        async with self.c.transaction():
            rows = await self.c.fetch(
                statement, [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
            )
        return len(rows)

    async def size(self) -> int:
        if not self.partitioned:
            return int(await self.c.fetchval("SELECT pg_total_relation_size('executions')"))
        return int(await self.c.fetchval(SIZE))


async def _timed(fn: Callable[[], Awaitable[Any]], times: int) -> list[float]:
    await fn()
    out = []
    for _ in range(times):
        started = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _runs(
    schedules: int, first: datetime, n: int, step_s: float
) -> list[tuple[Any, int, datetime]]:
    from scheduler.core.execution_ids import slot_execution_id

    out = []
    for i in range(n):
        sid = 1 + i % schedules
        slot = first + timedelta(seconds=(i // schedules) * step_s)
        out.append((slot_execution_id(sid, slot), sid, slot))
    return out


async def _reads(side: Side, now: datetime, repeats: int, schedules: int) -> dict[str, float]:
    from scheduler.store.history import HistoryStore

    async def history() -> None:
        async with side.sessions() as session:
            await HistoryStore.history(session, schedule=f"s-{max(1, schedules // 2)}", limit=50)

    async def stats() -> None:
        async with side.sessions() as session:
            await HistoryStore.stats(session, since=now - timedelta(hours=24))

    return {
        "history_ms_p50": round(statistics.median(await _timed(history, repeats)), 2),
        "stats_24h_ms_p50": round(statistics.median(await _timed(stats, max(3, repeats // 6))), 1),
    }


async def _plans(side: Side, now: datetime, schedule_id: int) -> dict[str, list[str]]:
    history = await side.c.fetch(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT e.id, e.status_id,"
        " e.created_at FROM executions e WHERE e.schedule_id = $1"
        " ORDER BY e.created_at DESC LIMIT 50",
        schedule_id,
    )
    stats = await side.c.fetch(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT e.status_id, count(*)"
        " FROM executions e WHERE e.created_at >= $1 GROUP BY e.status_id",
        now - timedelta(hours=24),
    )
    return {"history": [r[0] for r in history], "stats_24h": [r[0] for r in stats]}


def _partitions_read(plan: list[str]) -> int:
    """Partitions whose scan returned rows (`rows=0` scans are a single index descent)."""
    return sum(
        1
        for line in plan
        if "Scan" in line and "on executions_" in line and "rows=0 " not in line + " "
    )


async def _prune_oldest_day(side: Side, now: datetime) -> dict[str, float]:
    from scheduler.beat import upkeep
    from scheduler.core.retention import Policy
    from scheduler.store import partitions
    from scheduler.store.partitions import Interval

    oldest = partitions.period_start(now - timedelta(days=DAYS), Interval.DAY)
    cut = oldest + timedelta(days=1)
    started = time.perf_counter()
    if side.partitioned:
        policy = Policy.older_than(now - cut)
        report = await upkeep.prune(side.sessions, policy, now, batch=5000)
        total = (time.perf_counter() - started) * 1000
        return {"prune_day_ms": round(total, 1), "dropped": len(report.dropped)}
    deleted = 0
    while True:
        status = await side.c.execute(PLAIN_DELETE, cut)
        n = int(status.split()[-1])
        deleted += n
        if n < 5000:
            break
    return {"prune_day_ms": round((time.perf_counter() - started) * 1000, 1), "deleted": deleted}


async def _claim_finish(
    sides: list[Side], schedules: int, first: datetime, n: int
) -> dict[str, float]:
    """Median claim + finish of one run (us), the sides taking turns run by run."""
    from scheduler.store.run_tables import RunTables
    from scheduler.store.runs import RunStore

    tables = {side.label: RunTables() for side in sides}  # the worker's, one per database
    runs = _runs(schedules, first, n, 1.0)
    for side in sides:
        await side.insert(runs, status=QUEUED)
    per_run: dict[str, list[float]] = {side.label: [] for side in sides}
    for i, (run_id, _, _) in enumerate(runs):
        for side in sides if i % 2 == 0 else list(reversed(sides)):
            started = time.perf_counter()
            attempt = await RunStore.claim_execution(
                side.c, run_id, task="demo.noop", args_json="[]", kwargs_json="{}",
                worker="bench", now=datetime.now(UTC), tables=tables[side.label],
            )  # fmt: skip
            assert attempt == 1
            await RunStore.finish_run(
                side.c, run_id, status_id=SUCCESS, duration_ms=1,
                completed_at=datetime.now(UTC), tables=tables[side.label],
            )  # fmt: skip
            per_run[side.label].append((time.perf_counter() - started) * 1e6)
    return {label: round(statistics.median(v[n // 10 :]), 1) for label, v in per_run.items()}


async def _churn(side: Side, now: datetime, days: int, rows_per_day: int, schedules: int) -> None:
    """`days` times: prune the oldest day, write a day of runs past the newest."""
    for k in range(days):
        day = now + timedelta(days=1 + k)
        await side.make_days(day, day + timedelta(days=8))  # what the maintenance does
        await _prune_oldest_day(side, now + timedelta(days=1 + k))
        runs = _runs(schedules, day, rows_per_day, 86400 / (rows_per_day / schedules))
        for i in range(0, len(runs), 5000):
            await side.insert(runs[i : i + 5000], status=SUCCESS)
    if not side.partitioned:
        await side.c.execute("VACUUM executions")  # what autovacuum would have done


async def _bench(
    urls: dict[str, str], rows: int, schedules: int, churn_days: int
) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    sides = [Side(urls["partitioned"], partitioned=True), Side(urls["plain"], partitioned=False)]
    results: dict[str, dict[str, Any]] = {s.label: {"side": s.label} for s in sides}
    try:
        for side in sides:
            await side.open()
            results[side.label]["fill_s"] = round(await side.fill(rows, schedules, now), 1)
        for side in sides:
            results[side.label].update(await _reads(side, now, repeats=30, schedules=schedules))
        part = sides[0]
        plans = await _plans(part, now, max(1, schedules // 2))
        results["partitioned"]["plan_history"] = plans["history"]
        results["partitioned"]["plan_stats_24h"] = plans["stats_24h"]
        results["partitioned"]["stats_partitions_read"] = _partitions_read(plans["stats_24h"])
        # run insert: batches of 1,000 new slots, the two sides interleaved
        rates: dict[str, list[float]] = {s.label: [] for s in sides}
        for b in range(20):
            batch = _runs(schedules, now + timedelta(hours=2, seconds=b * 3600), 1000, 1.0)
            for side in sides if b % 2 == 0 else reversed(sides):
                started = time.perf_counter()
                assert await side.insert(batch) == len(batch)
                rates[side.label].append(len(batch) / (time.perf_counter() - started))
        for side in sides:
            results[side.label]["insert_runs_per_s"] = round(statistics.median(rates[side.label]))
        claims = await _claim_finish(sides, schedules, now + timedelta(days=1, hours=3), 2000)
        for side in sides:
            results[side.label]["claim_finish_us_p50"] = claims[side.label]
        for side in sides:
            results[side.label].update(await _prune_oldest_day(side, now))
        for side in sides:
            results[side.label]["size_before_churn_mb"] = round(await side.size() / 2**20, 1)
            await _churn(side, now, churn_days, rows // DAYS, schedules)
            results[side.label]["churn_days"] = churn_days
            results[side.label]["size_after_churn_mb"] = round(await side.size() / 2**20, 1)
    finally:
        for side in sides:
            await side.close()
    plain, partitioned = results["plain"], results["partitioned"]
    partitioned["insert_vs_plain"] = round(
        partitioned["insert_runs_per_s"] / plain["insert_runs_per_s"], 2
    )
    partitioned["claim_finish_vs_plain"] = round(
        partitioned["claim_finish_us_p50"] / plain["claim_finish_us_p50"], 2
    )
    return [partitioned, plain]


def bench_partitions(env: Env, rows: int, schedules: int, churn_days: int) -> list[dict[str, Any]]:
    from scheduler.runtime import migrate

    plain = env.fresh_database(migrated=False)
    partitioned = env.fresh_database()  # last: the one exported as DATABASE_URL
    asyncio.run(migrate.upgrade(plain, "0008"))
    return asyncio.run(
        _bench({"partitioned": partitioned, "plain": plain}, rows, schedules, churn_days)
    )


def report(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The table rows (without plans) and the plan lines to print."""
    lines = []
    for row in rows:
        for key in ("plan_history", "plan_stats_24h"):
            if key in row:
                lines.append(f"-- {row['side']}: {key[5:]}")
                lines.extend(row[key])
    keys = [k for row in rows for k in row if not k.startswith("plan_")]
    columns = list(dict.fromkeys(keys))
    table = [{k: row.get(k, "-") for k in columns} for row in rows]
    return table, lines
