"""How long finished runs are kept, by outcome, and how they go: whole partitions first.

Three classes, each with a default age (settings) and a per-schedule override
(`options.retention_days`, e.g. `{"success": 30, "failure": 365}`, checked by
scheduler.core.options):

- success: `success` (`SCHEDULER_RETENTION_SUCCESS`, default 14 days);
- failure: `failed`, `timeout`, `lost` and `revoked` (`SCHEDULER_RETENTION_FAILURE`, 90 days);
- skipped: `skipped`, `missed` (`SCHEDULER_RETENTION_SKIPPED`, 7 days).

A run's age counts from `created_at`. Runs not yet terminal are never removed. A partition
whose every row is past its retention is dropped whole (a catalog change, milliseconds); in the
others, the runs past retention are deleted in bounded batches, one transaction each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from scheduler.core.definitions import parse_duration
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.store import partitions
from scheduler.store.history import HistoryStore
from scheduler.store.models import NON_TERMINAL_STATUS_IDS
from scheduler.store.partitions import SCHEMA, Interval, MaintainReport, Partition

log = logging.getLogger(__name__)

CLASSES: dict[str, tuple[ExecutionStatus, ...]] = {
    "success": (ExecutionStatus.SUCCESS,),
    "failure": (
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.LOST,
        ExecutionStatus.REVOKED,
    ),
    "skipped": (ExecutionStatus.SKIPPED, ExecutionStatus.MISSED),
}
OVERRIDE_KEY = "retention_days"


def parse_retention(value: str) -> timedelta:
    """`14d`, `36h`, ... or a plain number of days."""
    try:
        days = Decimal(value.strip())
    except InvalidOperation:
        return timedelta(seconds=float(parse_duration(value)))
    if days <= 0:
        raise InvalidScheduleError(f"retention must be above 0: {value!r}")
    return timedelta(days=float(days))


@dataclass(frozen=True)
class Policy:
    """Ages per class; `single` (prune --older-than) replaces all three."""

    ages: dict[str, timedelta]
    single: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            {
                "success": parse_retention(settings.retention_success),
                "failure": parse_retention(settings.retention_failure),
                "skipped": parse_retention(settings.retention_skipped),
            }
        )

    @classmethod
    def older_than(cls, age: timedelta) -> Policy:
        return cls(dict.fromkeys(CLASSES, age), single=True)


@dataclass
class PruneReport:
    dropped: list[str] = field(default_factory=list)
    dropped_rows: int = 0
    compacted: list[str] = field(default_factory=list)
    """Partitions rewritten with only their kept runs (counted in `deleted`)."""
    deleted: int = 0


def _override(name: str) -> str:
    """A schedule's override of class `name` in days, NULL unless a positive number (a raw SQL
    row may hold anything: it then follows the default rather than failing the prune)."""
    value = f"s.options->'{OVERRIDE_KEY}'->'{name}'"
    return (
        f"CASE WHEN jsonb_typeof({value}) = 'number' AND ({value})::text::float8 > 0"
        f" THEN ({value})::text::float8 END"
    )


def _kept_condition(policy: Policy) -> str:
    """SQL true for a row of `e` (schedule `s`) that retention keeps at `:now`."""
    parts = [f"e.status_id IN ({', '.join(map(str, NON_TERMINAL_STATUS_IDS))})"]
    for name, statuses in CLASSES.items():
        ids = ", ".join(str(s.id) for s in statuses)
        days = policy.ages[name] / timedelta(days=1)
        age = f"{days!r}" if policy.single else f"coalesce({_override(name)}, {days!r})"
        parts.append(
            f"(e.status_id IN ({ids}) AND e.created_at >= CAST(:now AS timestamptz)"
            f" - make_interval(secs => {age} * 86400))"
        )
    return " OR ".join(parts)


async def partition_is_past(
    session: AsyncSession, partition: Partition, policy: Policy, now: datetime
) -> bool:
    """Whether every row of `partition` is terminal and past its retention. Stops at the
    first row kept (a partition in use answers at once)."""
    result = await session.execute(
        text(
            f"SELECT NOT EXISTS (SELECT 1 FROM {SCHEMA}.{partition.name} e"
            " LEFT JOIN schedules s ON s.id = e.schedule_id"
            f" WHERE {_kept_condition(policy)})"
        ),
        {"now": now},
    )
    return bool(result.scalar_one())


async def youngest_age(session: AsyncSession, policy: Policy) -> timedelta:
    """The shortest retention in force (the per-schedule overrides included): a row younger
    than it is kept whatever its outcome."""
    return await _bound_age(session, policy, "min")


async def longest_age(session: AsyncSession, policy: Policy) -> timedelta:
    """The longest retention in force (overrides included): a finished run older than it
    goes whatever its outcome and schedule."""
    return await _bound_age(session, policy, "max")


async def _bound_age(session: AsyncSession, policy: Policy, bound: str) -> timedelta:
    """The `min` or `max` retention over the defaults and every schedule's valid override."""
    pick = min if bound == "min" else max
    default = pick(policy.ages.values())
    if policy.single:
        return default
    result = await session.execute(
        text(
            f"SELECT {bound}(CASE WHEN jsonb_typeof(v) = 'number' AND v::text::float8 > 0"
            " THEN v::text::float8 END) FROM schedules s, jsonb_each("
            f"CASE WHEN jsonb_typeof(s.options->'{OVERRIDE_KEY}') = 'object'"
            f" THEN s.options->'{OVERRIDE_KEY}' END) AS t(k, v)"
        )
    )
    days = result.scalar_one()
    return default if days is None else pick(default, timedelta(days=float(days)))


async def past_partitions(
    session: AsyncSession, policy: Policy, now: datetime, existing: Sequence[Partition]
) -> list[Partition]:
    """The time partitions that ended before today whose every row is past retention, each
    locked against writes (SHARE) until the transaction ends, so none can change between
    this look and the drop. Call after `partitions.set_lock_timeout`."""
    keep_from = partitions.period_start(now, Interval.DAY)
    ended = [p for p in existing if not p.is_default and p.end is not None and p.end <= keep_from]
    if not ended:
        return []
    young = now - await youngest_age(session, policy)
    old = now - await longest_age(session, policy)
    ranges = await partitions.created_range(session, [p.name for p in ended])
    doomed = []
    for partition in ended:
        newest = ranges[partition.name][1]
        if newest is not None and newest >= young:
            continue  # holds a run younger than any retention
        await partitions.lock_for_drop(session, partition.name)
        if newest is None or newest < old:
            # older than every retention: only a run not yet finished could keep it
            if not await partitions.has_active_runs(session, partition.name):
                doomed.append(partition)
        elif await partition_is_past(session, partition, policy, now):
            doomed.append(partition)
    return doomed


async def compact(
    session: AsyncSession, partition: Partition, policy: Policy, now: datetime
) -> int | None:
    """Rewrite a partition with only the runs retention keeps, when at least half of it goes:
    the kept runs are copied aside, the partition truncated (its space and index entries
    returned at once, no dead rows), the kept runs written back with their ids. Writes to the
    partition wait meanwhile (old runs: seldom written); reads wait only for the truncate and
    the write back. Returns the runs removed, or None when fewer than half would go (the
    batched delete is then cheaper)."""
    kept = _kept_condition(policy)
    name = partition.name
    await partitions.lock_for_drop(session, name)
    counts = (
        await session.execute(
            text(
                f"SELECT count(*) FILTER (WHERE NOT ({kept})), count(*) FROM {SCHEMA}.{name} e"
                " LEFT JOIN schedules s ON s.id = e.schedule_id"
            ),
            {"now": now},
        )
    ).one()
    gone, total = int(counts[0]), int(counts[1])
    if gone == 0 or gone * 2 < total:
        return None
    await partitions.mark_moving(session)
    await session.execute(
        text(
            f"CREATE TEMP TABLE scheduler_kept ON COMMIT DROP AS SELECT e.* FROM {SCHEMA}.{name} e"
            f" LEFT JOIN schedules s ON s.id = e.schedule_id WHERE {kept}"
        ),
        {"now": now},
    )
    await session.execute(text(f"TRUNCATE {SCHEMA}.{name}"))
    await session.execute(text(f"INSERT INTO {SCHEMA}.{name} SELECT * FROM scheduler_kept"))
    await session.execute(text("DROP TABLE scheduler_kept"))
    return gone


async def compact_candidates(
    session: AsyncSession, policy: Policy, now: datetime
) -> list[Partition]:
    """Time partitions that ended before today and hold runs older than every retention."""
    keep_from = partitions.period_start(now, Interval.DAY)
    ended = [
        p
        for p in await partitions.list_partitions(session)
        if not p.is_default and p.end is not None and p.end <= keep_from
    ]
    young = now - await youngest_age(session, policy)
    ranges = await partitions.created_range(session, [p.name for p in ended])
    oldest = {name: low for name, (low, _) in ranges.items()}
    return [p for p in ended if (low := oldest[p.name]) is not None and low < young]


async def delete_batch(
    session: AsyncSession,
    partition: str,
    policy: Policy,
    now: datetime,
    *,
    batch: int,
    before: datetime,
) -> int:
    """Delete up to `batch` runs of one partition that retention no longer keeps (all are
    created before `before`: now minus `youngest_age`)."""
    result = await session.execute(
        text(
            f"DELETE FROM {SCHEMA}.{partition} WHERE id IN ("
            f" SELECT e.id FROM {SCHEMA}.{partition} e LEFT JOIN schedules s"
            " ON s.id = e.schedule_id"
            f" WHERE e.created_at < CAST(:oldest AS timestamptz) AND NOT ({_kept_condition(policy)})"
            " LIMIT :batch)"
        ),
        {"now": now, "oldest": before, "batch": batch},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def maintain(
    session: AsyncSession,
    settings: Settings,
    now: datetime,
    *,
    wait: bool,
    drop: bool = True,
) -> MaintainReport:
    """Create the partitions ahead and drop those wholly past retention, in the caller's
    transaction. `wait`: wait for the maintenance lock (CLI); else give up at once (a beat:
    another process is doing it)."""
    if not await partitions.take_lock(session, wait=wait):
        return MaintainReport(Interval.DAY, [], [], busy=True)
    interval = partitions.choose_interval(
        settings.partition_interval,
        await partitions.runs_per_day(session),
        settings.partition_daily_from_runs_per_day,
    )
    policy = Policy.from_settings(settings)
    await partitions.set_lock_timeout(session)
    existing = await partitions.list_partitions(session)
    doomed = await past_partitions(session, policy, now, existing) if drop else []
    created = []
    ahead = timedelta(days=settings.partition_ahead_days)
    for start, end in partitions.wanted_periods(now, interval, ahead):
        if partitions.overlaps(start, end, existing):
            continue
        name = await partitions.create_partition(session, start, end, interval)
        if name is not None:
            created.append(name)
    for partition in doomed:
        await partitions.drop_partition(session, partition.name)
    return MaintainReport(interval, created, [p.name for p in doomed])


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
