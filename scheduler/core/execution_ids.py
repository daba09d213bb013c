"""Execution ids: UUIDv7 values whose leading 48 bits are a time in milliseconds.

`executions` is partitioned by id range (see scheduler.store.partitions), so the time in an id picks
the partition of its row, and a lookup by id prunes to one partition.

- A run of a slot gets `slot_execution_id(schedule_id, slot)`: the time is the slot's, the other
  bits a digest of the pair. The same slot always gets the same id, so the primary key itself
  refuses a second run of a slot; the check `ck_executions_slot_id` (the SQL function
  `scheduler_slot_id`, computed the same way) makes the database refuse a slot row whose id was
  made any other way.
- Every other run (manual, retry, direct calls the project creates) gets `new_execution_id()`:
  the current time and random bits.

Pure: no I/O. The digest layout is fixed: changing it needs a migration of the SQL function.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_SPAN = 1 << 48
_ONE_US = timedelta(microseconds=1)


def epoch_us(instant: datetime) -> int:
    """Whole microseconds since the Unix epoch (exact, negative before 1970)."""
    return (instant - EPOCH) // _ONE_US


def _ms_bits(instant_us: int) -> int:
    return (instant_us // 1000) % _MS_SPAN


def _assemble(ms: int, rand: bytes) -> uuid.UUID:
    """48 bits of time, version 7, 12 bits of rand, variant 10, 62 bits of rand."""
    hexed = rand.hex()
    variant = format((int(hexed[3], 16) & 0x3) | 0x8, "x")
    return uuid.UUID(f"{ms:012x}7{hexed[0:3]}{variant}{hexed[4:19]}")


def slot_execution_id(schedule_id: int, slot: datetime) -> uuid.UUID:
    """The id of the run of `schedule_id` for `slot`: the same pair always gives the same id.

    The digest is MD5 of `"<schedule_id>:<microseconds since epoch>"` (not for secrecy: a
    spread of bits the SQL function can compute identically)."""
    us = epoch_us(slot)
    digest = hashlib.md5(f"{schedule_id}:{us}".encode(), usedforsecurity=False).digest()
    return _assemble(_ms_bits(us), digest)


def new_execution_id(at: datetime | None = None) -> uuid.UUID:
    """A random UUIDv7 for a run without a slot; its time (`at`, else this host's clock) only
    decides the partition the row is written to."""
    ms = _ms_bits(epoch_us(at)) if at is not None else time.time_ns() // 1_000_000 % _MS_SPAN
    return _assemble(ms, os.urandom(10))


def id_floor(instant: datetime) -> uuid.UUID:
    """The smallest id whose time is at or after `instant` (ms precision): a partition bound."""
    ms = _ms_bits(epoch_us(instant) + 999)
    return uuid.UUID(int=ms << 80)


def id_time(execution_id: uuid.UUID) -> datetime | None:
    """The time in a UUIDv7 id; None for another version (a Celery uuid4 task id, say)."""
    if execution_id.version != 7:
        return None
    return EPOCH + timedelta(milliseconds=execution_id.int >> 80)
