"""Pure parts of pausing, backfill, buffered runs and run trees (no I/O, `now` passed in)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.cli.history_cmd import tree_lines
from scheduler.core.backfill import backfill_slots, overlap_decisions
from scheduler.core.cron import make_timing
from scheduler.core.definitions import ScheduleDefinition, from_mapping, to_mapping, validate
from scheduler.core.domain import ExecutionStatus, OverlapPolicy
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.planner import DueSchedule, plan_row
from tests.support.planning import NOW, SETTINGS, due_row


def slots(r: DueSchedule, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
    timing = make_timing(
        cron=r.cron, interval_seconds=r.interval_seconds, run_at=r.run_at, timezone=r.timezone
    )
    return backfill_slots(r, timing, start, end, limit=limit)


def test_cron_backfill_slots_include_both_bounds_in_the_schedule_zone() -> None:
    r = due_row(cron="30 1 * * *", interval_seconds=None, timezone="Europe/London")
    got = slots(
        r, datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)
    )
    # 01:30 London: GMT on the 28th; on the 29th it does not exist (clocks go 01:00 GMT ->
    # 02:00 BST) and fires at the gap end; BST (00:30 UTC) on the 30th
    assert got == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


def test_interval_backfill_keeps_the_beats_grid() -> None:
    r = due_row(next_run_at=NOW + timedelta(seconds=30))  # grid at :30 of each minute
    got = slots(r, NOW - timedelta(minutes=3), NOW)
    assert got == [NOW - timedelta(seconds=s) for s in (150, 90, 30)]
    anchored = due_row(start_at=NOW - timedelta(minutes=2, seconds=10), next_run_at=None)
    assert slots(anchored, NOW - timedelta(hours=1), NOW)[0] == anchored.start_at


def test_backfill_respects_start_end_one_offs_and_the_limit() -> None:
    r = due_row(cron="0 * * * *", interval_seconds=None, end_at=NOW - timedelta(hours=2))
    assert slots(r, NOW - timedelta(hours=4), NOW)[-1] == NOW - timedelta(hours=2)
    once = due_row(interval_seconds=None, run_at=NOW - timedelta(hours=1))
    assert slots(once, NOW - timedelta(hours=2), NOW) == [NOW - timedelta(hours=1)]
    assert slots(once, NOW - timedelta(minutes=30), NOW) == []
    minutely = due_row(cron="* * * * *", interval_seconds=None)
    assert len(slots(minutely, NOW - timedelta(minutes=9), NOW, limit=10)) == 10
    with pytest.raises(InvalidScheduleError, match="more than 10 slots"):
        slots(minutely, NOW - timedelta(minutes=10), NOW, limit=10)
    with pytest.raises(InvalidScheduleError, match="--to is before --from"):
        slots(minutely, NOW, NOW - timedelta(minutes=1))


def test_overlap_decisions_for_runs_made_at_once() -> None:
    assert overlap_decisions(OverlapPolicy.ALLOW, 3, 3, 3) == [(True, False)] * 3
    assert overlap_decisions(OverlapPolicy.SKIP, 0, 0, 3) == [
        (True, False),
        (False, False),
        (False, False),
    ]
    assert overlap_decisions(OverlapPolicy.SKIP, 1, 0, 2) == [(False, False)] * 2
    # the first new run waits to start: it is the one buffered run
    assert overlap_decisions(OverlapPolicy.BUFFER_ONE, 0, 0, 2) == [(True, False), (False, False)]
    assert overlap_decisions(OverlapPolicy.BUFFER_ONE, 1, 0, 2) == [(True, True), (False, False)]


def test_buffer_one_run_behind_a_running_one_is_held_not_published() -> None:
    busy = due_row(overlap_policy="buffer_one", active_runs=1, waiting_runs=0)
    runs, update = plan_row(busy, now=NOW, registered=None, settings=SETTINGS)
    [run] = runs
    assert (run.status, run.held, run.fires, run.publishes) == (
        ExecutionStatus.PENDING,
        True,
        True,
        False,
    )
    assert update.runs_added == 1
    full = replace(busy, waiting_runs=1)
    [skipped] = plan_row(full, now=NOW, registered=None, settings=SETTINGS)[0]
    assert skipped.status is ExecutionStatus.SKIPPED
    idle = replace(busy, active_runs=0)
    [free] = plan_row(idle, now=NOW, registered=None, settings=SETTINGS)[0]
    assert (free.held, free.publishes) == (False, True)


def test_pause_after_failures_is_a_definition_field() -> None:
    definition = ScheduleDefinition(
        name="etl", task="demo.noop", cron="@daily", pause_after_failures=3
    )
    assert validate(definition) is definition
    assert to_mapping(definition)["pause_after_failures"] == 3
    assert from_mapping(to_mapping(definition)) == definition
    assert "pause_after_failures" not in to_mapping(replace(definition, pause_after_failures=None))
    bad: Any
    for bad in (0, -1, True, 2.5):
        with pytest.raises(InvalidScheduleError, match="pause after failures"):
            validate(replace(definition, pause_after_failures=bad))


def test_tree_lines_indent_children_under_their_parent() -> None:
    root, step1, step2, orphan = (uuid.uuid4() for _ in range(4))

    def node(i: uuid.UUID, task: str, parent: uuid.UUID | None, ms: int | None) -> dict[str, Any]:
        status = "success" if ms is not None else "running"
        return {"id": i, "task": task, "parent_id": parent, "status": status, "duration_ms": ms}

    lines = tree_lines(
        [
            node(root, "fan_out", None, 12),
            node(step1, "demo.noop", root, 1),
            node(step2, "demo.sleep", step1, None),
            node(orphan, "demo.noop", uuid.uuid4(), 3),
        ],
        current=step1,
    )
    assert lines[0].startswith("  fan_out  [green]success[/green]  12 ms")
    assert lines[1].startswith("*   demo.noop")
    assert lines[2].startswith("      demo.sleep  [cyan]running[/cyan]  -")
    assert lines[3].startswith("    demo.noop")
    assert str(orphan) in lines[3]
