"""The statements of `scheduler db upgrade --online` (scheduler.runtime.migrate_online): the
mirror trigger, a copy batch, the renames of the switch, the catalog reads, and the small
helpers that run them. The steps, their order, locks and retries are
scheduler.runtime.online_steps's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.core.exceptions import MigrationError

NEXT = "executions_next"
OLD = "executions_old"
PROGRESS = "executions_next_progress"
MIRROR = "scheduler_mirror_executions_next"


async def rename_names(
    conn: AsyncConnection,
    table: str,
    rename: Callable[[str], str],
    *,
    only_suffix: str = "",
) -> None:
    """Rename the constraints of `table` (an index behind one goes with it), then its
    other indexes; with `only_suffix`, only the names ending in it. The partitions'
    check constraints follow their table's; their own keys and indexes keep their
    names (they are made from the partitions' names)."""
    constraints = (
        await conn.execute(
            text(
                "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"
                " ORDER BY conname"
            ),
            {"t": f"public.{table}"},
        )
    ).scalars()
    indexes = (
        await conn.execute(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = CAST(:t AS regclass) AND NOT EXISTS (SELECT 1"
                " FROM pg_constraint k WHERE k.conrelid = i.indrelid"
                " AND k.conindid = i.indexrelid) ORDER BY c.relname"
            ),
            {"t": f"public.{table}"},
        )
    ).scalars()
    statements = [
        f"ALTER TABLE {table} RENAME CONSTRAINT {quoted(name)} TO {quoted(rename(name))}"
        for name in map(str, constraints)
        if name.endswith(only_suffix)
    ] + [
        f"ALTER INDEX {quoted(name)} RENAME TO {quoted(rename(name))}"
        for name in map(str, indexes)
        if name.endswith(only_suffix)
    ]
    await execute_all(conn, statements)


async def rename_not_null(conn: AsyncConnection) -> None:
    """PostgreSQL 18 records NOT NULL constraints with names made from the table's name at
    creation (`executions_next_id_not_null`): they get the names a plain upgrade gives them.
    The parent's first (a rename recurses to the partitions), then any partition's left."""
    for scope in (
        "c.conrelid = 'public.executions'::regclass",
        "c.conrelid IN (SELECT inhrelid FROM pg_inherits"
        " WHERE inhparent = 'public.executions'::regclass)",
    ):
        rows = (
            await conn.execute(
                text(
                    "SELECT c.conrelid::regclass::text, c.conname FROM pg_constraint c"
                    f" WHERE c.contype = 'n' AND c.conname LIKE '{NEXT}\\_%' AND {scope}"
                )
            )
        ).all()
        await execute_all(
            conn,
            [
                f"ALTER TABLE {table} RENAME CONSTRAINT {quoted(str(name))}"
                f" TO {quoted('executions_' + str(name).removeprefix(NEXT + '_'))}"
                for table, name in rows
            ],
        )


async def set_lock_timeout(conn: AsyncConnection, timeout_s: float) -> None:
    await conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, round(timeout_s * 1000))}ms'")


def referenced_table(definition: str) -> str:
    """The table a FOREIGN KEY definition references."""
    found = re.search(r"REFERENCES (\w+)", definition)
    if found is None:  # pragma: no cover - the revision's own definitions
        raise MigrationError(f"no referenced table in {definition!r}")
    return found.group(1)


async def execute_all(conn: AsyncConnection, statements: Sequence[str]) -> None:
    for statement in statements:
        await conn.exec_driver_sql(statement)


def work(statements: Sequence[str]) -> Callable[[AsyncConnection], Awaitable[None]]:
    """The statements, as work for `online_steps.Mover._locked`."""

    async def run(conn: AsyncConnection) -> None:
        await execute_all(conn, statements)

    return run


async def has_mirror(conn: AsyncConnection) -> bool:
    found = await conn.scalar(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger"
            " WHERE tgrelid = 'public.executions'::regclass AND tgname = :name)"
        ),
        {"name": MIRROR},
    )
    return bool(found)


async def table_exists(conn: AsyncConnection, table: str) -> bool:
    found = await conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{table}"})
    return bool(found)


async def estimated_rows(conn: AsyncConnection) -> int:
    """The rows of `executions` by its statistics (counted when it has none)."""
    estimate = await conn.scalar(
        text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.executions'::regclass")
    )
    if not estimate or estimate <= 0:  # never analyzed (or empty: counting is free)
        estimate = await conn.scalar(text("SELECT count(*) FROM executions"))
    return int(estimate or 0)


async def constraint_validated(conn: AsyncConnection, table: str, name: str) -> bool | None:
    """Whether constraint `name` of `table` is validated; None when there is none."""
    found = await conn.scalar(
        text(
            "SELECT convalidated FROM pg_constraint"
            " WHERE conrelid = CAST(:t AS regclass) AND conname = :n"
        ),
        {"t": table, "n": name},
    )
    return None if found is None else bool(found)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def mirror_function(columns: str) -> str:
    """The trigger function repeating a write to `executions` on `executions_next`."""
    names = [name.strip() for name in columns.split(",")]
    values = ", ".join(f"NEW.{name}" for name in names)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names if name != "id")
    return f"""
CREATE OR REPLACE FUNCTION {MIRROR}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM {NEXT} WHERE id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.id <> NEW.id THEN
            DELETE FROM {NEXT} WHERE id = OLD.id;
        END IF;
    END IF;
    INSERT INTO {NEXT} ({columns}) VALUES ({values})
    ON CONFLICT (id) DO UPDATE SET {updates};
    RETURN NULL;
END
$$
"""


LAST_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"
"""The largest uuid: the bound of the batch that reaches the end."""


def copy_batch(
    columns: str, after: str | None, size: int
) -> Callable[[AsyncConnection], Awaitable[tuple[str, int, int]]]:
    """One copy batch, as work for `online_steps.Mover._locked`: the ids after `after` (None: from the
    first) up to the bound `size` ids further on (LAST_ID when fewer are left), fixed before
    any row is read; its rows held FOR KEY SHARE and inserted unless mirrored, the progress
    row moved to the bound in the same transaction. Returns the bound and how many rows the
    batch read and inserted. (A locked row that a writer gave another id meanwhile comes back
    as it is now, with its new id; the fixed range keeps that id from moving the bound.)"""
    params: dict[str, object] = {"size": size}
    later = ""
    if after is not None:
        later, params["after"] = "id > CAST(:after AS uuid)", after
    select = (
        f"WITH bound AS (SELECT coalesce((SELECT id FROM executions"
        f"{' WHERE ' + later if later else ''} ORDER BY id OFFSET :size - 1 LIMIT 1),"
        f" '{LAST_ID}'::uuid) AS id),"
        f" batch AS (SELECT {columns} FROM executions"
        f" WHERE {later + ' AND ' if later else ''}id <= (SELECT id FROM bound)"
        " ORDER BY id FOR KEY SHARE),"
        f" copied AS (INSERT INTO {NEXT} ({columns}) SELECT {columns} FROM batch"
        " ON CONFLICT (id) DO NOTHING RETURNING 1)"
        " SELECT (SELECT id::text FROM bound), (SELECT count(*) FROM batch),"
        " (SELECT count(*) FROM copied)"
    )
    advance = (
        f"UPDATE {PROGRESS} SET copied_up_to = CAST(:bound AS uuid),"
        " rows_read = rows_read + :n_read, rows_copied = rows_copied + :n_copied"
    )

    async def run(conn: AsyncConnection) -> tuple[str, int, int]:
        bound, n_read, n_copied = (await conn.execute(text(select), params)).one()
        await conn.execute(text(advance), {"bound": bound, "n_read": n_read, "n_copied": n_copied})
        return str(bound), int(n_read), int(n_copied)

    return run
