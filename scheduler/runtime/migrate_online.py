"""`scheduler db upgrade --online`: revision 0009 reached in steps while beats and workers write.

Revision 0009 rebuilds `executions` in one transaction that holds the table's lock for the
whole copy. Here the partitioned table is built beside it instead, by the revision's own
helpers (loaded through Alembic) under the name `executions_next` and `_next` names, and the
lock is held only for the switch. Each step is a transaction of its own:

1. prepare: `scheduler_slot_id`, the schema `scheduler_partitions`, `executions_next` with its
   partitions (under their final names: the plain table has none), primary key, checks and
   indexes, and `executions_next_progress` (the last id copied). Locks nothing in use.
2. mirror: a row trigger on `executions` repeats every insert, update and delete on
   `executions_next`, in the writer's own transaction (an upsert of the new row; a delete, or
   an update of the id, removes the old id).
3. copy: batches of ids, each a range fixed before it reads (after the last batch's bound, up
   to the id `batch` rows further on), `ON CONFLICT (id) DO NOTHING` (a row the mirror wrote
   is newer and stays). A batch holds its source rows `FOR KEY SHARE` until it commits, so a
   delete of one of them waits for the batch and then finds the copied row to remove; updates
   do not wait; a row whose id a writer changes meanwhile is the mirror's.
4. keys: the foreign keys, per partition `NOT VALID` then validated (neither blocks writers),
   then on the whole table, which adopts the partitions' keys without a scan (but takes
   ACCESS EXCLUSIVE on schedules and execution_statuses for a moment). Checked row by row
   during the copy, a key would hold KEY SHARE on every schedule a batch names, and the
   beats' `FOR UPDATE SKIP LOCKED` would pass those schedules by until the batch commits.
5. check: ANALYZE, and the row counts of both tables, read in one snapshot, must agree.
6. switch: both tables locked ACCESS EXCLUSIVE; the mirror and the old alert triggers dropped;
   `executions` renamed `executions_old` (its constraints and indexes get `_old`),
   `executions_next` renamed `executions` (the `_next` names lose their suffix); 0009's alert
   triggers created, the grants copied, alembic_version set to 0009.

No alert fires for a copied row: `executions_next` has no alert triggers until the switch, and
until then the old table's fire, once, for what the writers do.

A step that needs a lock other sessions hold waits at most LOCK_TIMEOUT_S (so writers queue
behind it no longer) and is tried again after a capped back-off. A wait while holding a lock
writers need (a batch's rows, the tables locked first) lasts less than a quarter of the
server's `deadlock_timeout` (at most GIVE_WAY_S; both in online_steps): in a cycle with a
writer, the move's transaction gives way and is tried again, and the writer goes on. Stopped between two
transactions (`stop`), or killed anywhere, the database stays at 0008 and in use: the mirror
keeps the copy current, and the next run resumes the copy after the last id
`executions_next_progress` holds. A copy found without its mirror or its progress row, or
`restart=True`, is dropped and built again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import cast

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from scheduler.core.exceptions import MigrationError
from scheduler.runtime import migrate
from scheduler.runtime.online_steps import Mover
from scheduler.runtime.online_types import (
    MOVE_FROM,
    MOVE_TO,
    OnlineReport,
    PartitionedDDL,
    Progress,
    Step,
)

__all__ = ["DEFAULT_BATCH", "MAX_BATCH", "OnlineReport", "Progress", "Step", "upgrade"]

ADVISORY_KEY = 0x5C4ED_0009
"""`pg_try_advisory_lock` key: one online move at a time on a database."""
DEFAULT_BATCH = 10_000
MAX_BATCH = 1_000_000


def revision_0009() -> PartitionedDDL:
    """The module of revision 0009, as Alembic loads it."""
    script = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(MOVE_TO)
    if script is None:  # pragma: no cover - the revision ships with the code
        raise MigrationError(f"revision {MOVE_TO} is missing from migrations/versions")
    return cast(PartitionedDDL, script.module)


def _ignore(progress: Progress) -> None:
    del progress


async def upgrade(
    url: str,
    revision: str = "head",
    *,
    batch: int = DEFAULT_BATCH,
    copy_only: bool = False,
    restart: bool = False,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] = _ignore,
) -> OnlineReport:
    """Upgrade to `revision`, going from 0008 to 0009 online (the module's docstring); below
    0008 the plain migrations run first, from 0009 on the plain ones run after. `copy_only`
    stops before the switch (run again to switch). Raises MigrationStopped when `stop` is set
    between two transactions."""
    if not 1 <= batch <= MAX_BATCH:
        raise MigrationError(f"--batch {batch}: give a number of rows from 1 to {MAX_BATCH}")
    script = ScriptDirectory.from_config(migrate.alembic_config())
    target = _resolve(script, revision)
    if MOVE_TO not in _lineage(script, target):
        await migrate.upgrade(url, target)
        return OnlineReport(revision=await migrate.current(url))
    current = await migrate.current(url)
    if current is None or MOVE_FROM not in _lineage(script, current):
        on_progress(Progress(Step.UPGRADE, f"{current or 'base'} -> {MOVE_FROM}"))
        await migrate.upgrade(url, MOVE_FROM)
        current = MOVE_FROM
    report = OnlineReport(revision=current)
    if current == MOVE_FROM:
        report = await _move(
            url,
            batch=batch,
            copy_only=copy_only,
            restart=restart,
            stop=stop or threading.Event(),
            on_progress=on_progress,
        )
        if not report.switched:
            return replace(report, revision=MOVE_FROM)
    if target != MOVE_TO:
        await migrate.upgrade(url, target)
    return replace(report, revision=await migrate.current(url))


def _resolve(script: ScriptDirectory, revision: str) -> str:
    try:
        found = script.get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        raise MigrationError(f"no revision {revision!r}: give one of migrations/versions, or head")
    return found.revision


def _lineage(script: ScriptDirectory, revision: str) -> set[str]:
    """`revision` and every revision before it."""
    try:
        return {s.revision for s in script.iterate_revisions(revision, "base")}
    except CommandError as exc:
        raise MigrationError(
            f"the database is at revision {revision}, which this code does not know"
        ) from exc


async def _move(
    url: str,
    *,
    batch: int,
    copy_only: bool,
    restart: bool,
    stop: threading.Event,
    on_progress: Callable[[Progress], None],
) -> OnlineReport:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            async with conn.begin():
                held = await conn.scalar(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}
                )
            if not held:
                raise MigrationError(
                    "another `scheduler db upgrade --online` is at work on this database"
                )
            mover = Mover(conn, revision_0009(), stop, on_progress)
            return await mover.run(batch=batch, copy_only=copy_only, restart=restart)
    finally:
        await engine.dispose()
