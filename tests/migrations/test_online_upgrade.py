"""`scheduler db upgrade --online`: 0008 to 0009 while old beats and workers keep writing.

The command runs as a subprocess on a real database; a writer in this process does meanwhile
what the old beats and the workers do (new runs with uuid4 ids, claims and outcomes by id,
deletes), each statement timed, and keeps the state it expects of every row it touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from scheduler.runtime import migrate
from tests.support.cli import invoke, one_error_line
from tests.support.procs import ROOT
from tests.support.services import SessionServices
from tests.support.sqlhelp import connected
from tests.support.status import FAILED, PENDING, RUNNING, SUCCESS

ROWS = 1_000_000
SCHEDULES = 1_000
PASS_ROWS = 100
COLUMNS = (
    "id, schedule_id, task, args, kwargs, trigger, scheduled_for, status_id, created_at,"
    " queued_at, started_at, completed_at, duration_ms, attempt, worker, result_summary,"
    " error_type, error_message, traceback, progress, parent_id, root_id"
)
FINGERPRINT = "SELECT count(*), md5(string_agg(e::text, ',' ORDER BY e.id)) FROM {table} e"
ALERT_RULE = (
    "INSERT INTO notification_rules (name, events, webhook_url) VALUES ('every-run-event',"
    " ARRAY['failed', 'timeout', 'lost', 'missed', 'recovered'], 'http://127.0.0.1:9/')"
)
INDEXES_WITHOUT_CONSTRAINT = (
    "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition"
    " FROM pg_index i WHERE i.indrelid = 'executions'::regclass AND NOT EXISTS"
    " (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
)
OLD_BEAT_INSERT = (
    "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
    f" status_id) VALUES ($1, 1, 'demo.noop', '[]', '{{}}', 'schedule', now(), {PENDING})"
    " ON CONFLICT (schedule_id, scheduled_for) DO NOTHING"
)
"""How a beat of revision 0008 writes a run: random id, the slot's uniqueness by constraint."""


async def _seed(url: str, rows: int) -> None:
    """A database at 0008 with `rows` runs as pre-0009 beats wrote them (uuid4 ids), over 30
    days, of every status, some without a schedule, some in a run tree."""
    await migrate.upgrade(url, "0008")
    async with connected(url) as conn:
        await conn.execute(
            "INSERT INTO schedules (name, task, interval_seconds)"
            " SELECT 'every-' || i, 'demo.noop', 60 FROM generate_series(1, $1) i",
            SCHEDULES,
        )
        # consistent by construction, so without the per-row foreign-key and alert triggers
        # (3M queued trigger events: half the seed's time; the move validates the keys) and
        # with the plain indexes built after the rows, from their own definitions
        await conn.execute("SET session_replication_role = replica")
        plain = await conn.fetch(INDEXES_WITHOUT_CONSTRAINT)
        for index in plain:
            await conn.execute(f"DROP INDEX {index['name']}")
        await conn.execute(
            f"INSERT INTO executions ({COLUMNS})"
            " SELECT gen_random_uuid(), CASE WHEN g % 50 <> 0 THEN 1 + g % $2 END,"
            " 'demo.noop', '[]', jsonb_build_object('n', g),"
            " CASE WHEN g % 50 <> 0 THEN 'schedule' ELSE 'manual' END, t, 1 + g % 11, t,"
            " t + interval '1 second', t + interval '2 seconds',"
            " CASE WHEN g % 11 >= 4 THEN t + interval '3 seconds' END, g % 1000, g % 3,"
            " 'worker-' || g % 4, CASE WHEN g % 11 = 4 THEN 'ok' END,"
            " CASE WHEN g % 11 = 5 THEN 'ValueError' END,"
            " CASE WHEN g % 11 = 5 THEN 'failed ' || g END, NULL, NULL, NULL,"
            " CASE WHEN g % 7 = 0 THEN gen_random_uuid() END"
            " FROM generate_series(1, $1) g,"
            " LATERAL (SELECT now() - g * (interval '30 days' / $1)) AS c(t)",
            rows,
            SCHEDULES,
        )
        await conn.execute("RESET session_replication_role")
        for index in plain:
            await conn.execute(index["definition"])
        await conn.execute("ANALYZE executions")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "scheduler.cli", "db", "upgrade", "--online", *args]


@dataclass
class Writer:
    """Old beats and workers at work during the move: one connection per task, each with
    its own rows (a pool of seeded rows and the runs it inserts), so the state expected of
    a row is the order of its own task's statements."""

    url: str
    pools: list[list[dict[str, Any]]]
    tasks: int = 3
    pause_s: float = 0.01
    latencies_s: list[float] = field(default_factory=list)
    expected: dict[uuid.UUID, dict[str, Any] | None] = field(default_factory=dict)
    inserted: int = 0
    deleted: int = 0
    errors: list[BaseException] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)
    """How many of the first PASS_ROWS schedules each beat pass could lock."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._task(n) for n in range(self.tasks)))

    async def _timed(self, conn: asyncpg.Connection, sql: str, *args: object) -> str:
        started = time.perf_counter()
        status = await conn.execute(sql, *args)
        self.latencies_s.append(time.perf_counter() - started)
        return str(status)

    async def _task(self, n: int) -> None:
        rng = random.Random(n)
        mine = {row["id"]: dict(row) for row in self.pools[n]}
        async with connected(self.url) as conn:
            while not self.stop.is_set():
                try:
                    await self._one(conn, rng, mine, n)
                except Exception as exc:  # a writer must never see an error: the test fails
                    self.errors.append(exc)
                    return
                await asyncio.sleep(self.pause_s)

    async def _one(
        self,
        conn: asyncpg.Connection,
        rng: random.Random,
        mine: dict[uuid.UUID, dict[str, Any]],
        n: int,
    ) -> None:
        now = datetime.now(UTC)
        choice = rng.random()
        if n == 0 and choice < 0.05:
            await self._beat_pass(conn)
            return
        if choice < 0.3 or not mine:
            row = {
                "id": uuid.uuid4(),
                "schedule_id": rng.randint(1, SCHEDULES),
                "task": "demo.noop",
                "args": "[]",
                "kwargs": json.dumps({"writer": n}),
                "trigger": "schedule",
                "scheduled_for": now + timedelta(microseconds=rng.randint(0, 10**12)),
                "status_id": PENDING,
                "created_at": now,
                "queued_at": None,
                "started_at": None,
                "completed_at": None,
                "duration_ms": None,
                "attempt": 0,
                "worker": None,
                "result_summary": None,
                "error_type": None,
                "error_message": None,
                "traceback": None,
                "progress": None,
                "parent_id": None,
                "root_id": None,
            }
            values = ", ".join(f"${i}" for i in range(1, len(row) + 1))
            await self._timed(
                conn,
                f"INSERT INTO executions ({', '.join(row)}) VALUES ({values})",
                *row.values(),
            )
            self.inserted += 1
            self._keep(mine, row)
            return
        run_id = rng.choice(list(mine))
        row = mine[run_id]
        if choice < 0.55:
            changes = {"status_id": RUNNING, "started_at": now, "worker": f"writer-{n}"}
            sql = "UPDATE executions SET status_id = $2, started_at = $3, worker = $4 WHERE id = $1"
        elif choice < 0.8:
            status = rng.choice([SUCCESS, FAILED])
            changes = {
                "status_id": status,
                "completed_at": now,
                "duration_ms": rng.randint(1, 5000),
                "result_summary": "done" if status == SUCCESS else None,
            }
            sql = (
                "UPDATE executions SET status_id = $2, completed_at = $3, duration_ms = $4,"
                " result_summary = $5 WHERE id = $1"
            )
        elif choice < 0.97:
            assert await self._timed(conn, "DELETE FROM executions WHERE id = $1", run_id) == (
                "DELETE 1"
            )
            self.deleted += 1
            del mine[run_id]
            self.expected[run_id] = None
            return
        else:  # the id itself changes: the mirror moves the row
            new_id = uuid.uuid4()
            assert await self._timed(
                conn, "UPDATE executions SET id = $2 WHERE id = $1", run_id, new_id
            ) == ("UPDATE 1")
            del mine[run_id]
            self.expected[run_id] = None
            self._keep(mine, {**row, "id": new_id})
            return
        done = await self._timed(conn, sql, run_id, *changes.values())
        assert done == "UPDATE 1", done
        self._keep(mine, {**row, **changes})

    async def _beat_pass(self, conn: asyncpg.Connection) -> None:
        """A beat's lock on its due schedules: rows another transaction holds are passed by,
        so a move that held schedules (a foreign key checked by the copy) would starve it."""
        started = time.perf_counter()
        async with conn.transaction():
            locked = await conn.fetch(
                "SELECT id FROM schedules WHERE id <= $1 ORDER BY id FOR UPDATE SKIP LOCKED",
                PASS_ROWS,
            )
        self.latencies_s.append(time.perf_counter() - started)
        self.passes.append(len(locked))

    def _keep(self, mine: dict[uuid.UUID, dict[str, Any]], row: dict[str, Any]) -> None:
        mine[row["id"]] = row
        self.expected[row["id"]] = row


async def _differing_ids(conn: asyncpg.Connection) -> set[uuid.UUID]:
    """Ids whose row is not the same in every column in `executions_old` and `executions`."""
    rows = await conn.fetch(
        "SELECT coalesce(o.id, n.id) AS id FROM executions_old o FULL JOIN executions n"
        " ON n.id = o.id WHERE o.id IS NULL OR n.id IS NULL OR o::text <> n::text"
    )
    return {r["id"] for r in rows}


async def _names_left(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """The constraint and index names of `executions_old`, and anything still `_next`."""
    old = await conn.fetch(
        "SELECT conname AS name FROM pg_constraint WHERE conrelid = 'executions_old'::regclass"
        " UNION ALL SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'executions_old'::regclass"
    )
    next_ = await conn.fetch(
        "SELECT name FROM (SELECT relname::text AS name FROM pg_class"
        " UNION ALL SELECT conname::text FROM pg_constraint"
        " UNION ALL SELECT proname::text FROM pg_proc"
        " UNION ALL SELECT tgname::text FROM pg_trigger) n"
        " WHERE name ~ '(_next$|executions_next)'"
    )
    return {"old": [r["name"] for r in old], "next": [r["name"] for r in next_]}


@pytest.mark.timeout(300)
async def test_a_million_rows_move_while_beats_and_workers_write(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    started = time.monotonic()
    await _seed(url, ROWS)
    seeded_s = time.monotonic() - started
    async with connected(url) as conn:
        sample = await conn.fetch(
            f"SELECT {COLUMNS} FROM executions TABLESAMPLE SYSTEM (0.6) REPEATABLE (7)"
        )
        await conn.execute(ALERT_RULE)
    pools = [[dict(r) for r in sample[n::3]] for n in range(3)]
    writer = Writer(url, pools)
    writing = asyncio.create_task(writer.run())
    await asyncio.sleep(0.5)
    code, out, err = await _run("--json")
    await asyncio.sleep(0.5)  # writes after the switch too
    writer.stop.set()
    await writing
    moved_s = time.monotonic() - started - seeded_s
    assert code == 0, err
    assert writer.errors == []
    report = json.loads(out)
    assert report["switched"]
    assert report["revision"] == migrate.head_revision()
    assert "copy: done" in err

    async with connected(url) as conn:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == (
            migrate.head_revision()
        )
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'executions'::regclass"
        )
        names = await _names_left(conn)
        assert names["old"]
        assert [name for name in names["old"] if not name.endswith("_old")] == []
        assert names["next"] == []
        # untouched rows: the same in every column in both tables; touched: as the writer left them
        touched = set(writer.expected)
        assert await _differing_ids(conn) <= touched
        found = {
            r["id"]: dict(r)
            for r in await conn.fetch(
                f"SELECT {COLUMNS} FROM executions WHERE id = ANY($1::uuid[])", list(touched)
            )
        }
        assert found == {k: v for k, v in writer.expected.items() if v is not None}
        assert await conn.fetchval("SELECT count(*) FROM executions") == (
            ROWS + writer.inserted - writer.deleted
        )
        # alerts only for what the writer did, none for a copied row
        alerted = {
            r["execution_id"]
            for r in await conn.fetch("SELECT execution_id FROM notification_deliveries")
        }
        assert alerted <= touched
    # the beats' passes found their schedules free all along
    assert writer.passes
    assert min(writer.passes) >= PASS_ROWS * 0.9, sorted(writer.passes)[:10]
    longest = max(writer.latencies_s)
    print(
        f"\nonline move of {ROWS} rows: seed {seeded_s:.1f} s, command {moved_s:.1f} s,"
        f" copy {report['copy_s']:.1f} s ({ROWS / report['copy_s']:.0f} rows/s),"
        f" switch {report['switch_s']:.3f} s (lock wait {report['switch_lock_wait_s']:.3f} s,"
        f" attempts {report['switch_attempts']}); writer: {len(writer.latencies_s)} statements,"
        f" longest {longest:.3f} s, {writer.inserted} inserted, {writer.deleted} deleted,"
        f" {len(writer.passes)} beat passes locking at least {min(writer.passes)}/{PASS_ROWS}"
    )
    assert longest < 5.0


SMALL = 60_000


async def _fingerprint(conn: asyncpg.Connection, table: str) -> tuple[int, str]:
    row = await conn.fetchrow(FINGERPRINT.format(table=table))
    return int(row[0]), str(row[1])


async def _structure(conn: asyncpg.Connection) -> set[tuple[str, ...]]:
    """`executions` and its partitions as the catalog has them: kinds, constraints, indexes,
    triggers (period partitions' dates left out: two databases made on different days; NOT
    NULL constraints by column only: PostgreSQL 18 names them unique in the schema, so a plain
    upgrade, which renames the old table aside first, gets `executions_id_not_null1`)."""
    rows = await conn.fetch(
        "WITH t AS (SELECT 'executions'::regclass AS oid UNION ALL"
        " SELECT inhrelid FROM pg_inherits WHERE inhparent = 'executions'::regclass)"
        " SELECT 'rel', c.oid::regclass::text, c.relkind::text FROM t JOIN pg_class c USING (oid)"
        " UNION ALL SELECT 'constraint', conrelid::regclass::text,"
        " CASE WHEN contype = 'n' THEN 'not-null' ELSE conname END || ' '"
        " || pg_get_constraintdef(k.oid) || ' ' || convalidated || ' ' || (conparentid <> 0)"
        " FROM pg_constraint k JOIN t ON t.oid = k.conrelid"
        " UNION ALL SELECT 'index', indrelid::regclass::text, pg_get_indexdef(indexrelid)"
        " FROM pg_index JOIN t ON t.oid = indrelid"
        " UNION ALL SELECT 'trigger', tgrelid::regclass::text, pg_get_triggerdef(g.oid)"
        " FROM pg_trigger g JOIN t ON t.oid = g.tgrelid WHERE NOT tgisinternal"
    )
    period = re.compile(r"executions_[dw]\d{8}")
    return {tuple(period.sub("executions_PERIOD", str(value)) for value in r) for r in rows}


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *_command(*args),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(120)
async def test_a_move_stopped_during_the_copy_resumes_and_ends_as_the_plain_upgrade(
    empty_database_url: str, services: SessionServices
) -> None:
    url = empty_database_url
    await _seed(url, SMALL)
    async with connected(url) as conn:
        await conn.execute(ALERT_RULE)
    proc = await asyncio.create_subprocess_exec(
        *_command("--batch", "200"),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    while not any(line.startswith("copy: ") for line in lines):
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "".join(lines)
        lines.append(line)
    proc.send_signal(signal.SIGTERM)
    rest = (await proc.stderr.read()).decode()
    assert await proc.wait() == 128 + signal.SIGTERM, rest
    assert "stopped during the copy" in rest

    async with connected(url) as conn:
        # still 0008 and in use; the mirror carries writes made while no move runs
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == "0008"
        read = await conn.fetchval("SELECT rows_read FROM executions_next_progress")
        assert 0 < read < SMALL
        ids = [
            r["id"] for r in await conn.fetch("SELECT id FROM executions ORDER BY id DESC LIMIT 2")
        ]
        await conn.execute("DELETE FROM executions WHERE id = $1", ids[0])
        await conn.execute("UPDATE executions SET worker = 'between runs' WHERE id = $1", ids[1])
        await conn.execute(OLD_BEAT_INSERT, uuid.uuid4())
    assert "online move to 0009 is under way" in one_error_line(invoke("db", "upgrade"))

    code, out, err = await _run("--batch", "200", "--copy-only", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["resumed"], report["switched"], report["revision"]) == (True, False, "0008")
    assert report["rows_read"] >= SMALL

    async with connected(url) as conn:
        await conn.execute(OLD_BEAT_INSERT, uuid.uuid4())  # the old beats until they stop
        before = await _fingerprint(conn, "executions")
    code, out, err = await _run()
    assert code == 0, err
    assert "the previous table is kept as executions_old" in out

    reference = services.create_database(from_template=True)
    try:
        async with connected(url) as conn, connected(services.url_for(reference)) as plain:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == (
                migrate.head_revision()
            )
            assert await _fingerprint(conn, "executions") == before
            assert await _fingerprint(conn, "executions_old") == before
            assert await _structure(conn) == await _structure(plain)
            assert await conn.fetchval("SELECT count(*) FROM notification_deliveries") == 0
            # a beat of 0008 can no longer write a run: its conflict target is gone
            with pytest.raises(asyncpg.InvalidColumnReferenceError):
                await conn.execute(OLD_BEAT_INSERT, uuid.uuid4())
    finally:
        services.drop_database(reference)


def test_bad_input_is_one_line(empty_database_url: str) -> None:
    assert "--batch 0" in one_error_line(invoke("db", "upgrade", "--online", "--batch", "0"))
    assert "go with --online" in one_error_line(invoke("db", "upgrade", "--batch", "10"))
    assert "no revision 'nope'" in one_error_line(invoke("db", "upgrade", "nope", "--online"))
