"""Change pickup (`--only pickup`): a raw INSERT of a schedule into the database of a running
beat, milliseconds until its first message is on the broker (the beat is woken by the change,
not by its next poll)."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import asyncpg

from benchmarks.env import Env, dsn, run, start_beat
from benchmarks.processes import stop
from benchmarks.report import percentile


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
