"""The benchmark families, in the order they run: what each measures, how it is run at its
quick and FULL sizes, and how its figures are printed.

A family's `run(env, size)` yields `(results key, figures)` pairs as they are measured; each is
stored in benchmarks/results/latest.json under that key and printed at once by
`show(key, figures, size)`, so a family that fails half-way keeps what it measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from benchmarks.env import Env, console
from benchmarks.report import table, vertical_table

S = TypeVar("S")
Figures = Iterator[tuple[str, Any]]
Show = Callable[[str, Any, Any], None]


@dataclass(frozen=True)
class Family(Generic[S]):
    name: str
    measures: str
    """One line, for `--help`."""
    run: Callable[[Env, S], Figures]
    quick: S
    full: S
    show: Show


def tables(**titles: str) -> Show:
    """Print each results key as one table under its title."""

    def show(key: str, rows: Any, _size: Any) -> None:
        table(titles[key], rows)

    return show


def _burst(env: Env, sizes: tuple[int, ...]) -> Figures:
    from benchmarks.burst import bench_burst, bench_burst_due

    yield "burst_due", [row for n in sizes for row in bench_burst_due(env, n)]
    yield "burst", [bench_burst(env, n, anchors=n <= 10_000) for n in sizes]


def _brokers(env: Env, duration_s: int) -> Figures:
    from benchmarks.brokers import amqp_url, bench_broker_burst, bench_broker_steady

    if amqp_url() is None:
        console.print("RabbitMQ rows skipped: set BENCH_AMQP_URL (or TEST_AMQP_URL)")
    yield "broker_burst", bench_broker_burst(env, 10_000)
    yield "broker_steady", bench_broker_steady(env, duration_s)


def _pickup(env: Env, inserts: int) -> Figures:
    from benchmarks.pickup import bench_pickup

    yield "pickup", [bench_pickup(env, inserts)]


def _steady(env: Env, duration_s: int) -> Figures:
    from benchmarks.sustained import bench_steady

    yield "steady", [bench_steady(env, duration_s)]


def _sustained(env: Env, size: tuple[int, int, tuple[int, ...]]) -> Figures:
    from benchmarks.sustained import bench_sustained_all

    yield "sustained", bench_sustained_all(env, *size)


def _show_sustained(_key: str, figures: dict[str, Any], _size: Any) -> None:
    held = figures["highest_rate_held_one_beat"]
    vertical_table(
        "sustained: n every-second schedules, a bare consumer draining the broker "
        f"(highest rate held by one beat: {f'{held}/s' if held else 'none of those tried'})",
        figures["rows"],
        skip=("queue_depth_per_s", "overdue_rows_per_s"),
    )


def _scale(env: Env, sizes: tuple[int, ...]) -> Figures:
    from benchmarks.scale import bench_scale_all

    yield "scale", bench_scale_all(env, sizes)


def _show_scale(_key: str, figures: dict[str, Any], _size: Any) -> None:
    from benchmarks.scale import print_plans

    table("scale: idle pass and beat RSS", figures["rows"])
    print_plans(figures["plans"])


def _workers(env: Env, n: int) -> Figures:
    from benchmarks.workers import bench_workers

    yield "workers", [bench_workers(env, n), bench_workers(env, n, pool="prefork", concurrency=2)]


def _pools(env: Env, n: int) -> Figures:
    from benchmarks.workers import bench_pools

    yield "pools", bench_pools(env, n)


def _history(env: Env, rows: int) -> Figures:
    from benchmarks.history import bench_history

    yield "history", [bench_history(env, rows)]


def _observability(env: Env, size: tuple[int, int]) -> Figures:
    from benchmarks.observability import bench_hook_cost, bench_metrics_overhead, bench_scrape

    tasks, rounds = size
    yield "scrape", [bench_scrape(env, 10_000)]
    yield "metrics_hooks", [bench_hook_cost()]
    yield "metrics_overhead", [bench_metrics_overhead(env, tasks, rounds)]


def _web(env: Env, size: tuple[int, int, int]) -> Figures:
    from benchmarks.web import bench_web

    schedules, runs, repeats = size
    yield "web", bench_web(env, schedules, runs, repeats=repeats)


def _apply(env: Env, entries: int) -> Figures:
    from benchmarks.apply import bench_apply

    yield "apply", bench_apply(env, entries)


def _partitions(env: Env, size: tuple[int, int, int]) -> Figures:
    from benchmarks.partitions import bench_partitions

    yield "partitions", bench_partitions(env, *size)


def _show_partitions(_key: str, figures: list[dict[str, Any]], size: tuple[int, int, int]) -> None:
    from benchmarks.partitions import report

    rows, schedules, _ = size
    shown, plans = report(figures)
    table(
        f"executions partitioned vs plain: {rows:,} runs, {schedules:,} schedules, 30 days", shown
    )
    console.print("\n".join(plans))


FAMILIES: tuple[Family[Any], ...] = (
    Family(
        "burst", "n due at one instant: slot to last on the broker, vs kombu, celery beat, RedBeat",
        _burst, (1_000, 10_000), (1_000, 10_000, 100_000),
        tables(
            burst_due="burst due: n due at the same instant, seconds from the slot to the last "
            "on the broker (kombu batch measured just before, same conditions)",
            burst="burst overdue: n found already due by one pass, vs kombu, celery beat, RedBeat",
        ),
    ),
    Family(
        "brokers", "burst and steady load on Redis and RabbitMQ, vs a send_task loop",
        _brokers, 20, 60,
        tables(
            broker_burst="broker burst: 10k due at once, confirmed by the broker, vs a send_task "
            "loop",
            broker_steady="broker steady: 1k every-second + 1k every-minute schedules",
        ),
    ),
    Family(
        "pickup", "a raw INSERT into a running beat's database to its message on the broker",
        _pickup, 40, 200, tables(pickup="change pickup: raw INSERT -> message on the broker"),
    ),
    Family(
        "steady", "dispatch lag of 1k every-second + 1k every-minute schedules on one beat",
        _steady, 30, 120,
        tables(steady="steady load: 1k every-second + 1k every-minute schedules"),
    ),
    Family(
        "sustained", "n every-second schedules drained by a bare consumer, one beat then two",
        _sustained, (2_000, 20, ()), (10_000, 60, (5_000, 2_000, 1_000)), _show_sustained,
    ),
    Family(
        "scale", "idle pass and beat RSS at 1k-100k (1M) schedules vs RedBeat; idle-pass plans",
        _scale, (1_000, 10_000, 100_000), (1_000, 10_000, 100_000, 1_000_000), _show_scale,
    ),
    Family(
        "workers", "tracked vs bare Celery vs the seed pattern, same worker (solo, prefork)",
        _workers, 500, 2000,
        tables(workers="workers: tracked vs bare Celery vs the seed pattern, same worker"),
    ),
    Family(
        "pools", "tracked vs bare Celery no-op on every worker pool",
        _pools, 500, 2000, tables(pools="pools: tracked vs bare Celery no-op, per pool"),
    ),
    Family(
        "history", "history by schedule and 24 h stats at 1M executions",
        _history, 1_000_000, 1_000_000,
        tables(history="history and stats at 1M executions"),
    ),
    Family(
        "observability", "a metrics scrape at 10k schedules; the worker's metric hooks and cost",
        _observability, (500, 3), (2000, 5),
        tables(
            scrape="metrics: a scrape at 10k monitored schedules",
            metrics_hooks="metrics: the worker's hooks per run (us)",
            metrics_overhead="metrics: tracked tasks with vs without metrics",
        ),
    ),
    Family(
        "web", "dashboard server time, page weight and first load",
        _web, (1_000, 100_000, 10), (10_000, 1_000_000, 30),
        tables(web="dashboard: server time (Server-Timing), page weight, first load"),
    ),
    Family(
        "apply", "`scheduler apply FILE.yaml` of 10k (100k) entries, per CLI process",
        _apply, 10_000, 100_000,
        tables(apply="scheduler apply FILE.yaml: seconds per CLI process"),
    ),
    Family(
        "partitions", "partitioned vs plain executions: reads, prune, insert, claim, size",
        _partitions, (1_000_000, 1_000, 3), (10_000_000, 10_000, 7), _show_partitions,
    ),
)  # fmt: skip
BY_NAME: dict[str, Family[Any]] = {family.name: family for family in FAMILIES}
