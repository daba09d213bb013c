"""Held runs without I/O: due order, prepared messages, and which edits withdraw them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from scheduler.broker.frames import OutgoingMessage
from scheduler.core.domain import ExecutionStatus, Trigger
from scheduler.core.held import HeldRuns, changed_at
from scheduler.core.planner import PlannedRun

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
ROW: dict[str, Any] = {
    "id": 7,
    "task": "demo.noop",
    "cron": None,
    "interval_seconds": Decimal(1),
    "run_at": None,
    "timezone": "UTC",
    "start_at": None,
    "end_at": None,
    "day_match": "any",
}


def run(slot: datetime, schedule_id: int = 7) -> PlannedRun:
    return PlannedRun(
        id=uuid.uuid4(),
        schedule_id=schedule_id,
        task="demo.noop",
        args=[],
        kwargs={},
        options={},
        trigger=Trigger.SCHEDULE,
        scheduled_for=slot,
        status=ExecutionStatus.PENDING,
    )


def message(r: PlannedRun) -> OutgoingMessage:
    return OutgoingMessage(str(r.id), r.task, [], {}, {})


def test_runs_come_out_in_slot_order_with_their_prepared_messages() -> None:
    held = HeldRuns[OutgoingMessage]()
    later, sooner = run(T + 2 * S), run(T + S)
    for r in (later, sooner):
        held.hold(r, message(r), ROW)
    assert held.next_at == T + S
    assert held.take_due(T) == []
    assert held.take_due(T + 2 * S) == [sooner, later]
    assert held.message(sooner) == message(sooner)
    assert held.message(sooner) is None  # once
    assert len(held) == 0
    assert held.schedule_ids() == []  # nothing held: nothing to compare edits with


def test_runs_of_one_slot_come_out_in_the_order_they_were_held() -> None:
    held = HeldRuns[OutgoingMessage]()
    burst = [run(T + S, schedule_id=i) for i in range(5)]
    first, last = run(T), run(T + 2 * S)
    for r in (last, *burst[:3], first, *burst[3:]):
        held.hold(r, message(r), ROW)
    assert len(held) == 7
    held.drop([burst[1].id, last.id])
    assert (len(held), held.next_at) == (5, T)
    assert held.take_due(T + S) == [first, burst[0], *burst[2:]]
    assert (len(held), held.next_at) == (0, None)


def test_edits_withdraw_only_slots_after_them() -> None:
    held = HeldRuns[OutgoingMessage]()
    early, late = run(T + S), run(T + 3 * S)
    for r in (early, late):
        held.hold(r, message(r), ROW)
    same = {**ROW, "enabled": True, "next_run_at": T + 4 * S, "updated_at": T - S}
    assert held.stale({7: same}) == []
    described = {**same, "updated_at": T + 2 * S}  # an edit that is neither timing nor task
    assert held.stale({7: described}) == []
    disabled = {**same, "enabled": False, "updated_at": T + 2 * S}
    assert held.stale({7: disabled}) == [late]
    retimed = {**same, "interval_seconds": Decimal(60), "updated_at": T + 2 * S}
    assert held.stale({7: retimed}) == [late]
    assert held.stale({}) == [early, late]  # removed: all of them
    held.drop([late.id])
    assert len(held) == 1


def test_runs_planned_from_an_older_version_of_the_schedule_are_judged_by_it() -> None:
    held = HeldRuns[OutgoingMessage]()
    before, after = run(T + S), run(T + 2 * S)
    held.hold(before, message(before), ROW)
    retimed_row = {**ROW, "interval_seconds": Decimal(60)}
    held.hold(after, message(after), retimed_row)  # planned after the edit, in a later pass
    current = {**retimed_row, "enabled": True, "next_run_at": T + 3 * S, "updated_at": T}
    assert held.stale({7: current}) == [before]


def test_an_end_of_life_is_not_a_hand_disable() -> None:
    ended = {**ROW, "enabled": False, "next_run_at": None, "updated_at": T}
    assert changed_at(ROW, ended) is None
