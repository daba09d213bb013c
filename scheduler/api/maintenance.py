"""Upkeep: prune finished runs past their retention, create and drop the partitions of
`executions`, mark lost the runs whose worker died. The beats do all of it on their own;
these are the same steps by hand (`scheduler prune`, `partitions`, `reap`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from config.settings import get_settings
from scheduler.api.units import blocking, within
from scheduler.beat import upkeep
from scheduler.core.retention import Policy, PruneReport
from scheduler.runtime.db import get_runtime
from scheduler.store import partitions, retention


def retention_policy(older_than: timedelta | None = None) -> Policy:
    """One age for every finished run, or (None) the retention settings per outcome."""
    if older_than is None:
        return Policy.from_settings(get_settings())
    return Policy.older_than(older_than)


async def aprune_runs(
    policy: Policy,
    now: datetime,
    *,
    batch: int,
    keep_last: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> PruneReport:
    """Remove the finished runs past `policy` at `now`: whole partitions first, then those
    mostly past it rewritten, then batches of `batch` (one transaction each)."""
    return await upkeep.prune(
        get_runtime().sessions, policy, now, batch=batch, keep_last=keep_last, on_batch=on_batch
    )


async def amaintain_partitions(
    *, drop: bool = True, now: datetime | None = None
) -> partitions.MaintainReport:
    """Create the partitions ahead and (with `drop`) drop those wholly past retention;
    waits for a beat doing the same."""
    return await within(
        None, retention.maintain, get_settings(), now or datetime.now(UTC), wait=True, drop=drop
    )


async def alist_partitions() -> list[partitions.Partition]:
    return await within(None, partitions.list_partitions)


def reap_lost() -> int:
    """Mark `lost` the runs whose worker died or that outlived their hard time limit, once,
    now; returns how many. Workers are asked (Celery's `inspect stats`, twice, a second
    apart) which processes they run, so this is sync: it blocks while they answer."""
    import time

    from config.celery import app
    from scheduler.beat.reaper import WorkerWatch
    from scheduler.beat.reaper import reap_lost as mark_lost

    app.loader.import_default_modules()
    limits = {
        name: float(task.time_limit or app.conf.task_time_limit or 0)
        for name, task in app.tasks.items()
        if task.time_limit or app.conf.task_time_limit
    }
    watch = WorkerWatch(app)
    if watch.observe():
        time.sleep(1)
        watch.observe()

    return get_runtime().run(
        within(None, mark_lost, now=datetime.now(UTC), time_limits_s=limits, watch=watch)
    )


prune_runs = blocking(aprune_runs)
maintain_partitions = blocking(amaintain_partitions)
list_partitions = blocking(alist_partitions)
