"""The steps of one online move (scheduler.runtime.migrate_online says what each does and
how a stopped move resumes), on one connection that holds the move's advisory lock: their
order, their locks and their retries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.exceptions import MigrationError, MigrationStopped
from scheduler.runtime.online_sql import (
    LAST_ID,
    MIRROR,
    NEXT,
    OLD,
    PROGRESS,
    constraint_validated,
    copy_batch,
    estimated_rows,
    execute_all,
    has_mirror,
    mirror_function,
    referenced_table,
    rename_names,
    rename_not_null,
    set_lock_timeout,
    table_exists,
    work,
)
from scheduler.runtime.online_types import (
    MOVE_FROM,
    MOVE_TO,
    OnlineReport,
    PartitionedDDL,
    Progress,
    Step,
)
from scheduler.runtime.retry import backoff_s, lock_unavailable

T = TypeVar("T")
R = TypeVar("R")

LOCK_TIMEOUT_S = 2.0
LOCK_ATTEMPTS = 30
LOCK_BACKOFF_CAP_S = 10.0
GIVE_WAY_S = 0.25
COPY_ATTEMPTS = 100
COPY_BACKOFF_CAP_S = 1.0


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


class Mover:
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
        if await self._read(table_exists, OLD):
            raise MigrationError(
                f"a table {OLD} is in the way (kept by an earlier move?): drop or rename it,"
                " then run again"
            )
        found = [
            await self._read(table_exists, NEXT),
            await self._read(table_exists, PROGRESS),
            await self._read(has_mirror),
        ]
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

    async def _read(self, query: Callable[..., Awaitable[R]], *args: str) -> R:
        """A catalog read of online_sql's, in a transaction of its own."""
        async with self.conn.begin():
            return await query(self.conn, *args)

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
        estimate = await self._read(estimated_rows)
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
            if await self._read(constraint_validated, NEXT, f"{name}_next") is None
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
            state = await self._read(constraint_validated, table, name)
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
