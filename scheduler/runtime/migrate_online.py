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
server's `deadlock_timeout` (at most GIVE_WAY_S): in a cycle with a writer, the move's
transaction gives way and is tried again, and the writer goes on. Stopped between two
transactions (`stop`), or killed anywhere, the database stays at 0008 and in use: the mirror
keeps the copy current, and the next run resumes the copy after the last id
`executions_next_progress` holds. A copy found without its mirror or its progress row, or
`restart=True`, is dropped and built again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Generic, Protocol, TypeVar, cast

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import pool, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from scheduler.core.exceptions import MigrationError, MigrationStopped
from scheduler.runtime import migrate
from scheduler.runtime.online_sql import (
    LAST_ID,
    MIRROR,
    NEXT,
    OLD,
    PROGRESS,
    copy_batch,
    execute_all,
    has_mirror,
    mirror_function,
    referenced_table,
    rename_names,
    rename_not_null,
    set_lock_timeout,
    work,
)
from scheduler.runtime.retry import backoff_s, lock_unavailable

T = TypeVar("T")

MOVE_FROM = "0008"
MOVE_TO = "0009"
"""The mirror's trigger and its function."""
ADVISORY_KEY = 0x5C4ED_0009
"""`pg_try_advisory_lock` key: one online move at a time on a database."""
LOCK_TIMEOUT_S = 2.0
LOCK_ATTEMPTS = 30
LOCK_BACKOFF_CAP_S = 10.0
GIVE_WAY_S = 0.25
COPY_ATTEMPTS = 100
COPY_BACKOFF_CAP_S = 1.0
DEFAULT_BATCH = 10_000
MAX_BATCH = 1_000_000


class PartitionedDDL(Protocol):
    """What this module takes from revision 0009 (migrations/versions/0009_*.py)."""

    SCHEMA: str
    COLUMNS: str
    SLOT_ID_FUNCTION: str
    RECENT_RUNS: str
    GRANTS: str
    ALERT_TRIGGERS: list[str]
    FOREIGN_KEYS: list[tuple[str, str]]

    def daily_partitions(self, recent_runs: int) -> bool: ...

    def create_table(self, table: str, *, partitioned: bool, daily: bool) -> list[str]: ...

    def keys(self, table: str, *, partitioned: bool, suffix: str = "") -> list[str]: ...

    def foreign_keys(
        self, table: str, *, suffix: str = "", not_valid: bool = False
    ) -> list[str]: ...

    def indexes(self, table: str, *, partitioned: bool, suffix: str = "") -> list[str]: ...

    def alert_triggers(self, table: str, *, partitioned: bool) -> list[str]: ...

    def grant_statements(self, table: str, grants: Sequence[tuple[str, str]]) -> list[str]: ...


def revision_0009() -> PartitionedDDL:
    """The module of revision 0009, as Alembic loads it."""
    script = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(MOVE_TO)
    if script is None:  # pragma: no cover - the revision ships with the code
        raise MigrationError(f"revision {MOVE_TO} is missing from migrations/versions")
    return cast(PartitionedDDL, script.module)


class Step(StrEnum):
    UPGRADE = "upgrade"
    PREPARE = "prepare"
    MIRROR = "mirror"
    COPY = "copy"
    KEYS = "keys"
    CHECK = "check"
    SWITCH = "switch"


@dataclass(frozen=True)
class Progress:
    """What a step did, for the command's output; the copy's figures are this run's."""

    step: Step
    note: str = ""
    rows_read: int = 0
    rows_estimate: int = 0
    rows_per_s: float = 0.0


@dataclass(frozen=True)
class OnlineReport:
    """How an online upgrade went. `moved`: the copy ran (the database was at 0008);
    `switched`: `executions` is the partitioned table now. Row figures count the whole move,
    earlier interrupted runs included; times are this run's."""

    revision: str | None
    moved: bool = False
    switched: bool = False
    resumed: bool = False
    rows: int = 0
    rows_read: int = 0
    rows_copied: int = 0
    copy_s: float = 0.0
    switch_s: float = 0.0
    switch_lock_wait_s: float = 0.0
    switch_attempts: int = 0


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
            mover = _Mover(conn, revision_0009(), stop, on_progress)
            return await mover.run(batch=batch, copy_only=copy_only, restart=restart)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class _Attempts(Generic[T]):
    """The result of a transaction tried until it had its locks, and how that went."""

    result: T
    attempts: int
    last_s: float
    """The duration of the attempt that committed."""
    failed_s: list[float] = field(default_factory=list)
    """How long each failed attempt waited before its lock timed out."""


@dataclass(frozen=True)
class _Copied:
    rows_read: int
    rows_copied: int
    elapsed_s: float


class _Mover:
    """The steps of one move, on one connection (which holds the advisory lock)."""

    def __init__(
        self,
        conn: AsyncConnection,
        ddl: PartitionedDDL,
        stop: threading.Event,
        on_progress: Callable[[Progress], None],
    ) -> None:
        self.conn = conn
        self.ddl = ddl
        self.stop = stop
        self.on_progress = on_progress
        self.give_way_s = GIVE_WAY_S
        self.referenced = [referenced_table(definition) for _, definition in ddl.FOREIGN_KEYS]

    async def run(self, *, batch: int, copy_only: bool, restart: bool) -> OnlineReport:
        await self._read_deadlock_timeout()
        resumed = await self._begin(restart=restart)
        copied = await self._copy(batch, resumed=resumed)
        self._check_stop("after the copy")
        await self._keys()
        self._check_stop("after the copy")
        rows = await self._check()
        report = OnlineReport(
            revision=MOVE_FROM,
            moved=True,
            resumed=resumed,
            rows=rows,
            rows_read=copied.rows_read,
            rows_copied=copied.rows_copied,
            copy_s=copied.elapsed_s,
        )
        if copy_only:
            return report
        self._check_stop("before the switch")
        switch = await self._locked(self._switch, what="the switch")
        lock_wait_s = max([switch.result, *switch.failed_s])
        self.on_progress(
            Progress(
                Step.SWITCH,
                f"executions is partitioned (revision {MOVE_TO}) after {switch.last_s:.2f} s,"
                f" lock wait {lock_wait_s:.2f} s, attempt {switch.attempts}; the old table is"
                f" {OLD}",
            )
        )
        return replace(
            report,
            switched=True,
            switch_s=switch.last_s,
            switch_lock_wait_s=lock_wait_s,
            switch_attempts=switch.attempts,
        )

    async def _read_deadlock_timeout(self) -> None:
        async with self.conn.begin():
            deadlock_ms = await self.conn.scalar(
                text("SELECT setting::float FROM pg_settings WHERE name = 'deadlock_timeout'")
            )
        self.give_way_s = min(GIVE_WAY_S, float(deadlock_ms or 1000) / 4000)

    async def _begin(self, *, restart: bool) -> bool:
        """Steps 1 and 2, unless a copy begun earlier can go on; returns whether it does."""
        if await self._exists(OLD):
            raise MigrationError(
                f"a table {OLD} is in the way (kept by an earlier move?): drop or rename it,"
                " then run again"
            )
        found = [await self._exists(NEXT), await self._exists(PROGRESS), await self._has_mirror()]
        if all(found) and not restart:
            return True
        if any(found):
            await self._locked(
                work([f"DROP TRIGGER IF EXISTS {MIRROR} ON executions"]),
                what="dropping the mirror trigger",
            )
            await self._locked(
                work(
                    [
                        f"DROP TABLE IF EXISTS {NEXT}, {PROGRESS}",
                        f"DROP FUNCTION IF EXISTS {MIRROR}()",
                    ]
                ),
                what=f"dropping {NEXT}",
            )
            self.on_progress(Progress(Step.PREPARE, f"dropped the {NEXT} of an earlier run"))
        self._check_stop("before the copy")
        partitions = (await self._locked(self._prepare, what=f"creating {NEXT}")).result
        self.on_progress(Progress(Step.PREPARE, f"{NEXT} created, {partitions} partitions"))
        self._check_stop("before the copy")
        await self._locked(self._create_mirror, what="creating the mirror trigger")
        self.on_progress(Progress(Step.MIRROR, f"writes to executions go to {NEXT} too"))
        return False

    def _check_stop(self, where: str) -> None:
        if self.stop.is_set():
            raise MigrationStopped(
                f"stopped {where}: the database is at {MOVE_FROM} and in use as before;"
                " run `scheduler db upgrade --online` again to resume"
            )

    async def _locked(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        what: str,
        timeout_s: float = LOCK_TIMEOUT_S,
        attempts: int = LOCK_ATTEMPTS,
        first_s: float = 0.5,
        cap_s: float = LOCK_BACKOFF_CAP_S,
    ) -> _Attempts[T]:
        """`work` in a transaction whose lock waits last at most `timeout_s`, tried again
        (after a capped back-off) while a lock is not had in time."""
        failed: list[float] = []
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                async with self.conn.begin():
                    await set_lock_timeout(self.conn, timeout_s)
                    result = await work(self.conn)
                return _Attempts(result, attempt, time.monotonic() - started, failed)
            except DBAPIError as exc:
                if not lock_unavailable(exc):
                    raise
                failed.append(time.monotonic() - started)
                if attempt == attempts:
                    raise MigrationError(
                        f"{what}: no lock in {attempts} tries of {timeout_s:g} s (a long"
                        " transaction on executions? see pg_stat_activity); run again"
                    ) from exc
            self._check_stop(f"while waiting for a lock ({what})")
            await asyncio.sleep(backoff_s(attempt, cap_s=cap_s, first_s=first_s))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exists(self, table: str) -> bool:
        async with self.conn.begin():
            found = await self.conn.scalar(
                text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{table}"}
            )
        return bool(found)

    async def _has_mirror(self) -> bool:
        async with self.conn.begin():
            return await has_mirror(self.conn)

    async def _prepare(self, conn: AsyncConnection) -> int:
        """Step 1; returns the number of partitions (the default one included)."""
        ddl = self.ddl
        recent = int((await conn.execute(text(ddl.RECENT_RUNS))).scalar_one())
        table = ddl.create_table(NEXT, partitioned=True, daily=ddl.daily_partitions(recent))
        await execute_all(
            conn,
            [
                ddl.SLOT_ID_FUNCTION,
                f"CREATE SCHEMA IF NOT EXISTS {ddl.SCHEMA}",
                *table,
                *ddl.keys(NEXT, partitioned=True, suffix="_next"),
                *ddl.indexes(NEXT, partitioned=True, suffix="_next"),
                f"CREATE TABLE {PROGRESS} (copied_up_to uuid,"
                " rows_read bigint NOT NULL DEFAULT 0, rows_copied bigint NOT NULL DEFAULT 0,"
                " started_at timestamptz NOT NULL DEFAULT now())",
                f"INSERT INTO {PROGRESS} DEFAULT VALUES",
            ],
        )
        return len(table) - 1

    async def _create_mirror(self, conn: AsyncConnection) -> None:
        """Step 2 (SHARE ROW EXCLUSIVE on executions: waits for the writers of the moment)."""
        await execute_all(
            conn,
            [
                mirror_function(self.ddl.COLUMNS),
                f"CREATE TRIGGER {MIRROR} AFTER INSERT OR UPDATE OR DELETE ON executions"
                f" FOR EACH ROW EXECUTE FUNCTION {MIRROR}()",
            ],
        )

    async def _copy(self, batch: int, *, resumed: bool) -> _Copied:
        """Step 3: batches until one has reached the last possible id."""
        async with self.conn.begin():
            bound, rows_read, rows_copied = (
                await self.conn.execute(
                    text(f"SELECT copied_up_to::text, rows_read, rows_copied FROM {PROGRESS}")
                )
            ).one()
        after: str | None = bound
        estimate = await self._estimate()
        if resumed:
            self.on_progress(
                Progress(Step.COPY, f"resuming after {rows_read} rows read by an earlier run")
            )
        started = time.monotonic()
        read_here = 0
        while after != LAST_ID:
            self._check_stop(f"during the copy ({rows_read} of ~{estimate} rows read)")
            done = await self._locked(
                copy_batch(self.ddl.COLUMNS, after, batch),
                what="a copy batch",
                timeout_s=self.give_way_s,
                attempts=COPY_ATTEMPTS,
                first_s=0.05,
                cap_s=COPY_BACKOFF_CAP_S,
            )
            after, n_read, n_copied = done.result
            rows_read, rows_copied = rows_read + n_read, rows_copied + n_copied
            read_here += n_read
            if not n_read:
                continue
            self.on_progress(
                Progress(
                    Step.COPY,
                    rows_read=rows_read,
                    rows_estimate=max(estimate, rows_read),
                    rows_per_s=read_here / max(time.monotonic() - started, 1e-6),
                )
            )
        elapsed = time.monotonic() - started
        self.on_progress(
            Progress(
                Step.COPY,
                f"done: {rows_read} rows read, {rows_copied} copied (the rest were mirrored),"
                f" {elapsed:.1f} s",
                rows_read=rows_read,
                rows_estimate=max(estimate, rows_read),
                rows_per_s=read_here / max(elapsed, 1e-6),
            )
        )
        return _Copied(int(rows_read), int(rows_copied), elapsed)

    async def _estimate(self) -> int:
        """The rows of `executions` by its statistics (counted when it has none)."""
        async with self.conn.begin():
            estimate = await self.conn.scalar(
                text(
                    "SELECT reltuples::bigint FROM pg_class"
                    " WHERE oid = 'public.executions'::regclass"
                )
            )
            if not estimate or estimate <= 0:  # never analyzed (or empty: counting is free)
                estimate = await self.conn.scalar(text("SELECT count(*) FROM executions"))
        return int(estimate or 0)

    async def _keys(self) -> None:
        """Step 4; each part is skipped when a previous run did it."""
        ddl = self.ddl
        async with self.conn.begin():
            partitions = [
                str(name)
                for name in (
                    await self.conn.execute(
                        text(
                            "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                            " ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass)"
                            " ORDER BY c.relname"
                        ),
                        {"t": f"public.{NEXT}"},
                    )
                ).scalars()
            ]
        for partition in partitions:
            await self._partition_keys(f"{ddl.SCHEMA}.{partition}")
            self._check_stop("after the copy")
        missing = [
            statement
            for (name, _), statement in zip(
                ddl.FOREIGN_KEYS, ddl.foreign_keys(NEXT, suffix="_next"), strict=True
            )
            if await self._constraint(NEXT, f"{name}_next") is None
        ]
        if missing:
            referenced = ", ".join(self.referenced)
            await self._locked(
                self._after_locks(
                    [(NEXT, "SHARE ROW EXCLUSIVE"), (referenced, "ACCESS EXCLUSIVE")], missing
                ),
                what=f"the foreign keys of {NEXT}",
            )
        self.on_progress(
            Progress(Step.KEYS, f"foreign keys checked on {len(partitions)} partitions")
        )

    async def _partition_keys(self, table: str) -> None:
        """A partition's foreign keys, `NOT VALID` (a moment's locks), then validated."""
        statements = self.ddl.foreign_keys(table, not_valid=True)
        for (name, _), statement, referenced in zip(
            self.ddl.FOREIGN_KEYS, statements, self.referenced, strict=True
        ):
            state = await self._constraint(table, name)
            if state is None:
                await self._locked(
                    self._after_locks(
                        [(table, "SHARE ROW EXCLUSIVE"), (referenced, "SHARE ROW EXCLUSIVE")],
                        [statement],
                    ),
                    what=f"a foreign key on {table}",
                )
            if not state:
                await self._locked(
                    work([f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}"]),
                    what=f"checking a foreign key on {table}",
                )

    def _after_locks(
        self, locks: Sequence[tuple[str, str]], statements: Sequence[str]
    ) -> Callable[[AsyncConnection], Awaitable[None]]:
        """The statements after the tables' locks, taken in the order given: the first at the
        transaction's lock timeout, the others, taken while holding it, at `give_way_s`."""

        async def run(conn: AsyncConnection) -> None:
            for n, (tables, mode) in enumerate(locks):
                if n == 1:
                    await set_lock_timeout(conn, self.give_way_s)
                await conn.exec_driver_sql(f"LOCK TABLE {tables} IN {mode} MODE")
            await execute_all(conn, statements)

        return run

    async def _constraint(self, table: str, name: str) -> bool | None:
        """Whether constraint `name` of `table` is validated; None when there is none."""
        async with self.conn.begin():
            found = await self.conn.scalar(
                text(
                    "SELECT convalidated FROM pg_constraint"
                    " WHERE conrelid = CAST(:t AS regclass) AND conname = :n"
                ),
                {"t": table, "n": name},
            )
        return None if found is None else bool(found)

    async def _check(self) -> int:
        """Step 5: ANALYZE, then both tables' rows counted in one snapshot."""
        await self._locked(work([f"ANALYZE {NEXT}"]), what=f"ANALYZE {NEXT}")
        async with self.conn.begin():
            old, new = (
                await self.conn.execute(
                    text(f"SELECT (SELECT count(*) FROM executions), (SELECT count(*) FROM {NEXT})")
                )
            ).one()
        if old != new:
            raise MigrationError(
                f"executions has {old} rows and {NEXT} {new}: some write went around the mirror"
                " (TRUNCATE, session_replication_role = replica); run again with --restart to"
                " copy from the start"
            )
        self.on_progress(Progress(Step.CHECK, f"{NEXT} analyzed, {old} rows in both tables"))
        return int(old)

    async def _switch(self, conn: AsyncConnection) -> float:
        """Step 6, in the caller's transaction; returns how long the locks took."""
        ddl = self.ddl
        started = time.monotonic()
        await conn.exec_driver_sql(f"LOCK TABLE executions, {NEXT} IN ACCESS EXCLUSIVE MODE")
        lock_wait_s = time.monotonic() - started
        version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        if version != MOVE_FROM:
            raise MigrationError(f"the database went to revision {version} during the move")
        if not await has_mirror(conn):
            raise MigrationError(
                f"the mirror trigger on executions is gone: {NEXT} may miss writes;"
                " run again with --restart"
            )
        grants = [(str(g), str(p)) for g, p in (await conn.execute(text(ddl.GRANTS))).all()]
        await execute_all(
            conn,
            [
                f"DROP TRIGGER {MIRROR} ON executions",
                *(f"DROP TRIGGER IF EXISTS {name} ON executions" for name in ddl.ALERT_TRIGGERS),
                f"ALTER TABLE executions RENAME TO {OLD}",
            ],
        )
        await rename_names(conn, OLD, lambda name: f"{name}_old")
        await conn.exec_driver_sql(f"ALTER TABLE {NEXT} RENAME TO executions")
        await rename_names(
            conn, "executions", lambda name: name.removesuffix("_next"), only_suffix="_next"
        )
        await rename_not_null(conn)
        await execute_all(
            conn,
            [
                *ddl.alert_triggers("executions", partitioned=True),
                *ddl.grant_statements("executions", grants),
                f"DROP TABLE {PROGRESS}",
                f"DROP FUNCTION {MIRROR}()",
            ],
        )
        await conn.execute(
            text("UPDATE alembic_version SET version_num = :to WHERE version_num = :from_"),
            {"to": MOVE_TO, "from_": MOVE_FROM},
        )
        return lock_wait_s
