"""Retention applied in SQL: partitions wholly past a policy, partitions rewritten with their
kept runs, runs past it deleted in bounded batches, partition upkeep in one transaction.

A partition whose every row is past its retention is dropped whole (a catalog change,
milliseconds); in the others, the runs past retention are deleted in bounded batches, one
transaction each. The policy itself is `scheduler.core.retention`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from scheduler.core.retention import CLASSES, OVERRIDE_KEY, Policy
from scheduler.store import partitions
from scheduler.store.models import NON_TERMINAL_STATUS_IDS
from scheduler.store.partitions import SCHEMA, Interval, MaintainReport, Partition

log = logging.getLogger(__name__)


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
