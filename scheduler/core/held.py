"""Runs written ahead and held in the beat's memory until their slot.

Pure bookkeeping, no I/O: a heap by due time, the message of each run (built when it was
written, so publishing it is a push of ready bytes), and the identity columns (task and
timing) of the schedule row each run was planned from, which decide whether a later edit of
the schedule withdraws it. Identities are kept per run: a schedule edited between two passes
has runs planned from both versions.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from scheduler.beat.publisher import OutgoingMessage
from scheduler.core.planner import PlannedRun
from scheduler.store.dispatch import IDENTITY_KEYS

ALWAYS = datetime.min.replace(tzinfo=UTC)


class HeldRuns:
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, PlannedRun]] = []
        self._seq = 0
        self._messages: dict[uuid.UUID, OutgoingMessage] = {}
        self._planned_from: dict[uuid.UUID, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def next_at(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def hold(self, run: PlannedRun, message: OutgoingMessage, row: Mapping[str, Any]) -> None:
        """Hold `run` (with its prepared `message`) until its slot; `row` is the schedule row
        it was planned from."""
        assert run.scheduled_for is not None
        self._seq += 1
        heapq.heappush(self._heap, (run.scheduled_for, self._seq, run))
        self._messages[run.id] = message
        self._planned_from[run.id] = {key: row[key] for key in IDENTITY_KEYS}

    def message(self, run: PlannedRun) -> OutgoingMessage | None:
        """The prepared message of a run taken from here (once)."""
        return self._messages.pop(run.id, None)

    def take_due(self, now: datetime) -> list[PlannedRun]:
        """The runs whose slot has come, removed (their messages wait for `message`)."""
        due: list[PlannedRun] = []
        while self._heap and self._heap[0][0] <= now:
            run = heapq.heappop(self._heap)[2]
            self._planned_from.pop(run.id, None)
            due.append(run)
        return due

    def schedule_ids(self) -> list[int]:
        """The schedules with runs held."""
        return sorted({run.schedule_id for _, _, run in self._heap})

    def stale(self, current: Mapping[int, Mapping[str, Any]]) -> list[PlannedRun]:
        """Held runs their schedule no longer stands behind, given each schedule's current
        identity (plus `enabled`, `next_run_at`, `updated_at`): see `changed_at`."""
        stale: list[PlannedRun] = []
        for _, _, run in self._heap:
            instant = changed_at(self._planned_from[run.id], current.get(run.schedule_id))
            if (
                instant is not None
                and run.scheduled_for is not None
                and run.scheduled_for > instant
            ):
                stale.append(run)
        return stale

    def drop(self, execution_ids: Iterable[uuid.UUID]) -> None:
        gone = set(execution_ids)
        self._heap = [entry for entry in self._heap if entry[2].id not in gone]
        heapq.heapify(self._heap)
        for execution_id in gone:
            self._messages.pop(execution_id, None)
            self._planned_from.pop(execution_id, None)


def changed_at(planned: Mapping[str, Any], current: Mapping[str, Any] | None) -> datetime | None:
    """When the schedule stopped being the one held runs were planned from, if it did:
    removed (any time), disabled by hand (an end of life clears next_run_at as well), or its
    task or timing edited. Runs of slots after that instant are withdrawn."""
    if current is None:
        return ALWAYS
    disabled = not current["enabled"] and current["next_run_at"] is not None
    if disabled or any(current[key] != value for key, value in planned.items()):
        changed: datetime = current["updated_at"]
        return changed
    return None
