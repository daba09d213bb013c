"""History and stats (`--only history`): the repository's own `history --schedule X --limit 50`
and `stats --since 24h` queries over 1M executions (1,000 schedules, one run in 50 failed)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.env import Env, run, sql


def bench_history(env: Env, rows: int) -> dict[str, Any]:
    from scheduler.core.domain import ExecutionStatus
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
            "CASE WHEN i % 50 = 0 THEN $2::smallint ELSE $3::smallint END, "
            "now() - (i || ' seconds')::interval, "
            "now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval, "
            "(i * 7) % 1000, 1 FROM generate_series(1, $1) i",
            rows,
            ExecutionStatus.FAILED.id,
            ExecutionStatus.SUCCESS.id,
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
