"""The beat's partition upkeep (created ahead, dropped and rewritten behind) and `prune`, the
same work run to the end in bounded transactions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from config.settings import Settings
from scheduler.core.retention import Policy, PruneReport
from scheduler.store import partitions
from scheduler.store.history import HistoryStore
from scheduler.store.retention import (
    compact,
    compact_candidates,
    delete_batch,
    maintain,
    past_partitions,
    youngest_age,
)

log = logging.getLogger(__name__)


async def prune(
    sessions: Any,
    policy: Policy,
    now: datetime,
    *,
    batch: int,
    keep_last: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> PruneReport:
    """Drop the partitions wholly past `policy`, then delete the remaining runs past it in
    batches of `batch` (one transaction each). `keep_last` (each schedule's newest N are kept)
    needs a single age (`Policy.older_than`) and deletes rows only: a whole partition may hold
    some schedule's newest runs."""
    report = PruneReport()
    if keep_last == 0:
        async with sessions() as session, session.begin():
            await partitions.set_lock_timeout(session)
            existing = await partitions.list_partitions(session)
            for partition in await past_partitions(session, policy, now, existing):
                await partitions.drop_partition(session, partition.name)
                report.dropped.append(partition.name)
                report.dropped_rows += partition.rows_estimate
    if keep_last > 0:
        cutoff = now - policy.ages["success"]
        while True:
            async with sessions() as session, session.begin():
                n = await HistoryStore.prune_batch(
                    session, older_than=cutoff, keep_last=keep_last, batch=batch
                )
            report.deleted += n
            if on_batch is not None:
                on_batch(n)
            if n < batch:
                return report
    async with sessions() as session:
        candidates = await compact_candidates(session, policy, now)
    for partition in candidates:
        async with sessions() as session, session.begin():
            await partitions.set_lock_timeout(session)
            gone = await compact(session, partition, policy, now)
        if gone is not None:
            report.compacted.append(partition.name)
            report.deleted += gone
            if on_batch is not None:
                on_batch(gone)
    async with sessions() as session:
        names = [p.name for p in await partitions.list_partitions(session)]
        young = now - await youngest_age(session, policy)
        ranges = await partitions.created_range(session, names)
    for name in names:
        oldest = ranges[name][0]
        if oldest is None or oldest >= young:
            continue  # nothing in it is old enough to go
        while True:
            async with sessions() as session, session.begin():
                n = await delete_batch(session, name, policy, now, batch=batch, before=young)
            report.deleted += n
            if on_batch is not None:
                on_batch(n)
            if n < batch:
                break
    return report


class Upkeep:
    """A beat's partition duty: `maintain` at start and every `partition_maintain_s`, as a
    task beside the passes (a pass never waits for it), one at a time; a failure (a busy
    table, a role that may not run DDL) is logged and tried again next time."""

    def __init__(self, sessions: Any, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._last: float | None = None
        self._task: asyncio.Task[None] | None = None

    def poke(self, now: datetime) -> asyncio.Task[None] | None:
        """Start a maintenance if one is due (the task started, else None); call from the
        process's event loop."""
        clock = time.monotonic()
        if self._task is not None and not self._task.done():
            return None
        if self._last is not None and clock - self._last < self.settings.partition_maintain_s:
            return None
        self._last = clock
        self._task = asyncio.get_running_loop().create_task(self.run(now))
        return self._task

    async def run(self, now: datetime) -> None:
        try:
            async with self.sessions() as session, session.begin():
                report = await maintain(session, self.settings, now, wait=False)
        except Exception as exc:
            log.warning("partition maintenance failed (%s): tried again later", exc)
            return
        try:
            compacted = await self.compact_one(now)
        except Exception as exc:
            log.warning("partition compaction failed (%s): tried again later", exc)
            compacted = None
        if compacted is not None:
            log.info("partition %s rewritten with its kept runs", compacted)
        if report.created or report.dropped:
            log.info(
                "partitions of executions: created %s, dropped %s",
                ", ".join(report.created) or "none",
                ", ".join(report.dropped) or "none",
            )

    async def compact_one(self, now: datetime) -> str | None:
        """Rewrite at most one partition mostly past retention (bounded work per run)."""
        policy = Policy.from_settings(self.settings)
        async with self.sessions() as session:
            candidates = await compact_candidates(session, policy, now)
        for partition in candidates:
            async with self.sessions() as session, session.begin():
                await partitions.set_lock_timeout(session)
                if await compact(session, partition, policy, now) is not None:
                    return partition.name
        return None
