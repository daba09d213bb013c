"""Scale (`--only scale`): the idle pass and the beat's RSS at 1k / 10k / 100k schedules
(and 1M with --full), against RedBeat with as many entries; and the query plans of the idle
pass at the smallest and the largest size.

The idle pass's statements are not copied from the engine: they are captured while
`Dispatcher.run_once` runs (SQLAlchemy's `before_cursor_execute`), so the comparison follows
the engine as it changes. Each is then explained (plan text, no ANALYZE) with the parameters
it ran with, and the plans' shapes (node types, relations and indexes, without costs or
literals) are compared between the sizes.
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks.anchors import redbeat_scale
from benchmarks.burst import insert_due_schedules
from benchmarks.env import Env, console, dsn, run, sql, start_beat
from benchmarks.processes import peak_rss_mb, settled_rss_mb, stop
from benchmarks.report import percentile

CAPTURED_PASSES = 5
REDBEAT_MAX = 100_000
"""RedBeat's anchor up to this size: 1M of its entries would take about 0.8 GB of Redis, and
its idle tick does not grow with the number of entries (1k-100k)."""


def bench_scale(env: Env, n: int) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Idle pass (what a beat does when it wakes and nothing is due) and beat RSS; with the
    plans of the idle pass's statements ({statement: plan lines})."""
    from sqlalchemy import event

    from config.celery import app
    from config.settings import Settings
    from scheduler.beat.dispatcher import Dispatcher
    from scheduler.broker.publisher import Publisher
    from scheduler.runtime.db import close_runtime, get_runtime

    url = env.fresh_database()
    later = datetime.now(UTC) + timedelta(days=1)
    start = time.perf_counter()
    insert_due_schedules(url, n, later)  # one INSERT ... SELECT generate_series
    insert_s = time.perf_counter() - start
    # as autovacuum leaves a table that has been there a while (and so that it does not run
    # beside the timed passes): statistics and the visibility map up to date
    run(sql(url, "VACUUM ANALYZE schedules"))
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

    captured: dict[str, tuple[Any, ...]] = {}

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if not many:
            captured.setdefault(statement, tuple(parameters or ()))

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", capture)
    try:
        for _ in range(CAPTURED_PASSES):  # after the timed ones: the hook costs nothing there
            runtime.run(dispatcher.run_once(datetime.now(UTC)))
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", capture)
    close_runtime()
    plans = run(explain(url, captured))
    beat = start_beat(env, url, env.tmp / f"beat-scale-{n}.log")
    try:
        rss = settled_rss_mb(beat.pid)  # at 100k+ a start-up that reads every row takes a while
        peak = peak_rss_mb(beat.pid)
    finally:
        stop(beat)
    redbeat = redbeat_scale(env, n) if n <= REDBEAT_MAX else {}
    row = {
        "schedules": n,
        "insert_s": round(insert_s, 1),
        "idle_tick_ms_p50": round(statistics.median(samples), 2),
        "idle_tick_ms_p99": round(percentile(samples, 0.99), 2),
        "redbeat_idle_tick_ms_p50": _rounded(redbeat.get("redbeat_idle_tick_ms_p50"), 2),
        "beat_rss_mb": round(rss, 1),
        "beat_peak_rss_mb": round(peak, 1),
        "redbeat_rss_mb": _rounded(redbeat.get("redbeat_rss_mb"), 1),
        "idle_statements": len(plans),
    }
    return row, plans


def _rounded(value: float | None, digits: int) -> float | str:
    return "-" if value is None else round(value, digits)


async def explain(url: str, statements: dict[str, tuple[Any, ...]]) -> dict[str, list[str]]:
    """EXPLAIN (plan text, not executed) of each statement with the parameters it ran with."""
    conn = await asyncpg.connect(dsn(url))
    plans: dict[str, list[str]] = {}
    try:
        for statement, parameters in statements.items():
            try:
                rows = await conn.fetch(f"EXPLAIN {statement}", *parameters)
                plans[statement] = [str(r[0]) for r in rows]
            except asyncpg.PostgresError as exc:
                plans[statement] = [f"(not explained: {exc})"]
    finally:
        await conn.close()
    return plans


_COST = re.compile(r"\s+\(cost=[^)]*\)")


def plan_shape(lines: list[str]) -> list[str]:
    """The plan's nodes with their depth, relations and indexes; no costs, row estimates,
    conditions or literals (those change with the data and the parameters)."""
    shape = []
    for line in lines:
        node = line.strip().removeprefix("->").strip()
        if "(cost=" in line or node.startswith(("InitPlan", "SubPlan")):
            indent = len(line) - len(line.lstrip())
            shape.append(" " * indent + _COST.sub("", node))
    return shape


def compare_plans(
    small: tuple[int, dict[str, list[str]]], large: tuple[int, dict[str, list[str]]]
) -> dict[str, Any]:
    """Per statement of the idle pass: its plan at both sizes and whether the shapes match."""
    (n_small, at_small), (n_large, at_large) = small, large
    statements = []
    for statement in sorted(at_small.keys() | at_large.keys()):
        here, there = at_small.get(statement), at_large.get(statement)
        same = here is not None and there is not None and plan_shape(here) == plan_shape(there)
        statements.append(
            {
                "statement": statement,
                "same_shape": same,
                "plans": {str(n_small): here, str(n_large): there},
            }
        )
    return {
        "sizes": [n_small, n_large],
        "same_shape": all(s["same_shape"] for s in statements),
        "statements": statements,
    }


def print_plans(comparison: dict[str, Any]) -> None:
    n_small, n_large = comparison["sizes"]
    verdict = "the same shape" if comparison["same_shape"] else "NOT the same shape"
    console.print(f"[bold]idle pass plans at {n_small:,} vs {n_large:,} schedules: {verdict}")
    for item in comparison["statements"]:
        console.print(f"\n[bold]{'same' if item['same_shape'] else 'DIFFERENT'}:[/] ", end="")
        console.print(item["statement"], markup=False, highlight=False)
        for size, lines in item["plans"].items():
            console.print(f"  at {int(size):,}:")
            for line in lines or ["(not run at this size)"]:
                console.print(f"    {line}", markup=False, highlight=False)


def bench_scale_all(env: Env, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Every size in turn (one failing does not stop the others), the plans of the idle pass
    at the smallest and the largest compared."""
    rows: list[dict[str, Any]] = []
    plans: dict[int, dict[str, list[str]]] = {}
    for n in sizes:
        try:
            row, plans[n] = bench_scale(env, n)
        except Exception as exc:  # the other sizes still count
            console.print(f"scale at {n:,} schedules failed: {exc!r}")
            row, plans[n] = {"schedules": n, "error": repr(exc)}, {}
        console.print(row)
        rows.append(row)
    comparison = compare_plans((sizes[0], plans[sizes[0]]), (sizes[-1], plans[sizes[-1]]))
    for row in rows:
        row["plan_as_at_1k"] = plan_shapes_equal(plans[sizes[0]], plans[row["schedules"]])
    return {"rows": rows, "plans": comparison}


def plan_shapes_equal(a: dict[str, list[str]], b: dict[str, list[str]]) -> bool:
    return a.keys() == b.keys() and all(plan_shape(a[k]) == plan_shape(b[k]) for k in a)
