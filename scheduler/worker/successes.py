"""Successful outcomes, written in batches.

Nothing waits on a success (`TrackedTask._finish`): the worker takes its next message while
the row is written. So successes are gathered per process and written together, one
statement for all those that arrived while the previous write was in flight or within
`LINGER_S` of the first one: under load that is one round trip, one commit and one wake of
the event loop for many runs instead of one each. A write that fails for any reason is
redone outcome by outcome through `write_outcome`, with its retries while the database
restarts and its fallback for texts the database refuses, so a batch never loses a run's
outcome that a single write would have kept.

`Runtime.drain` (SIGTERM, the worker's shutdown) waits for the pending batch like for any
submitted write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from scheduler.runtime.db import Runtime
from scheduler.worker import followup
from scheduler.worker.outcome import OUTCOME_LANE, RUN_TABLES, on_held_connection, write_outcome

log = logging.getLogger(__name__)

LINGER_S = 0.002
"""How long the first success of a batch waits for others: the bound on the extra delay
before a success is visible, small against a run's own round trips."""
BATCH_MAX = 500
"""Successes per statement at most."""
SUCCESS_LANE = "successes"
"""The held connection of the one writer (see `outcome.LANES`)."""


class SuccessBatch:
    """The successes of one process waiting to be written, and the one writer draining them
    on the process's event loop."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._writing = False

    def add(self, runtime: Runtime, execution_id: str, outcome: dict[str, Any]) -> None:
        """Queue a success (any thread); the first of a batch starts the writer."""
        with self._lock:
            self._pending.append((execution_id, outcome))
            if self._writing:
                return
            self._writing = True
        runtime.submit(self._write_all())

    async def _write_all(self) -> None:
        await asyncio.sleep(LINGER_S)
        while True:
            with self._lock:
                batch = self._pending[:BATCH_MAX]
                del self._pending[:BATCH_MAX]
                if not batch:
                    self._writing = False
                    return
            await _write(batch)


async def _write(batch: list[tuple[str, dict[str, Any]]]) -> None:
    try:
        await on_held_connection(
            followup.finish_successes, batch, lane=SUCCESS_LANE, tables=RUN_TABLES
        )
    except Exception as exc:
        log.warning("a batch of %d outcomes is written one by one: %s", len(batch), exc)
        for execution_id, outcome in batch:
            await write_outcome(execution_id, outcome, OUTCOME_LANE)


_batch: tuple[int, SuccessBatch] | None = None
_batch_lock = threading.Lock()


def process_batch() -> SuccessBatch:
    """This process's batch (a new one after fork)."""
    global _batch
    current = _batch
    if current is None or current[0] != os.getpid():
        with _batch_lock:
            current = _batch
            if current is None or current[0] != os.getpid():
                current = _batch = (os.getpid(), SuccessBatch())
    return current[1]
