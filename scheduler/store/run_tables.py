"""Which table holds a run: the run path names the partition its id falls in.

A prepared statement on the partitioned `executions` opens and locks every partition before
it prunes to the one the id names (PostgreSQL 15): about 0.1 ms more a statement at 40 daily
partitions, paid twice per run (claim and outcome). The worker's claim, outcome and progress
name the partition instead, found from a list of the partitions' id ranges read from the
catalog (docs/BENCHMARKS.md, "History at scale").

Correct whatever the list's age: a range partition holds every row whose id lies in its
range, so a listed partition is the row's table. An id in no listed range (the default
partition, a partition made since the list was read) goes through the parent, and a partition
dropped since answers "relation does not exist" (42P01; "permission denied", 42501, for a
list read under another role): the caller forgets the list and goes through the parent. The list leaves out partitions this role may not write directly
(its grants and its schema's), and is empty on a table that is not partitioned.
"""

from __future__ import annotations

import bisect
import re
import time
import uuid
from typing import Any

PARENT = "executions"
REFRESH_S = 60.0
"""How long a list of partitions is used before it is read again."""
MISS_REFRESH_S = 5.0
"""An id in no listed range has the list read again, at most this often."""

_LIST_SQL = (
    "SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid)"
    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE i.inhparent = to_regclass('public.executions')"
    " AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')"
    " AND has_table_privilege(c.oid, 'UPDATE')"
)
_BOUND = re.compile(r"^FOR VALUES FROM \('([0-9a-f-]{36})'\) TO \('([0-9a-f-]{36})'\)$")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def is_stale_table(exc: BaseException) -> bool:
    """A statement named a table that is gone (42P01: a partition dropped meanwhile) or that
    this role may not write (42501: a list read under another role or database)."""
    return getattr(exc, "sqlstate", None) in {"42P01", "42501"}


class RunTables:
    """The partitions' id ranges, for one process; `relation(driver, id)` names the table
    to write a run in. Not shared between event loops (one per process runtime)."""

    def __init__(self, *, refresh_s: float = REFRESH_S) -> None:
        self.refresh_s = refresh_s
        self._lows: list[int] = []
        self._ranges: list[tuple[int, int, str]] = []
        self._read_at = -float("inf")
        self._missed_at = -float("inf")

    async def relation(self, driver: Any, execution_id: uuid.UUID) -> str:
        """The table holding (or to hold) `execution_id`: a partition, else the parent."""
        clock = time.monotonic()
        if clock - self._read_at >= self.refresh_s:
            await self._read(driver, clock)
        found = self._find(execution_id.int)
        if found is None and clock - self._missed_at >= MISS_REFRESH_S:
            self._missed_at = clock
            if clock > self._read_at:
                await self._read(driver, clock)
                found = self._find(execution_id.int)
        return found or PARENT

    def forget(self) -> None:
        """Read the list again before the next statement."""
        self._read_at = -float("inf")

    def _find(self, value: int) -> str | None:
        at = bisect.bisect_right(self._lows, value) - 1
        if at < 0:
            return None
        low, high, name = self._ranges[at]
        return name if low <= value < high else None

    async def _read(self, driver: Any, clock: float) -> None:
        ranges = []
        for schema, name, bound in await driver.fetch(_LIST_SQL):
            match = _BOUND.match(str(bound))
            if match is None or not (_NAME.fullmatch(schema) and _NAME.fullmatch(name)):
                continue  # the default partition, or a name that would need quoting
            low, high = uuid.UUID(match[1]).int, uuid.UUID(match[2]).int
            ranges.append((low, high, f"{schema}.{name}"))
        ranges.sort()
        self._ranges = ranges
        self._lows = [low for low, _, _ in ranges]
        self._read_at = clock
