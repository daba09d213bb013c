"""Planner policies with `now` as a parameter: misfire, overlap, jitter, end of life, bad rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from scheduler.core.domain import ExecutionStatus, Trigger
from scheduler.core.planner import jitter_s, plan, plan_row
from tests.support.planning import NOW, SETTINGS, due_row

REGISTERED = frozenset({"demo.noop"})


def test_due_slot_fires_and_advances_on_the_grid() -> None:
    late = NOW + timedelta(seconds=7)
    runs, update = plan_row(due_row(), now=late, registered=REGISTERED, settings=SETTINGS)
    assert [(r.scheduled_for, r.trigger, r.status) for r in runs] == [
        (NOW, Trigger.SCHEDULE, ExecutionStatus.PENDING)
    ]
    assert runs[0].kwargs["execution_id"] == str(runs[0].id)
    assert update.next_run_at == NOW + timedelta(seconds=60)
    assert update.runs_added == 1
    assert update.last_run_at == NOW


def test_new_interval_row_fires_at_once_and_cron_row_waits() -> None:
    runs, update = plan_row(
        due_row(next_run_at=None), now=NOW, registered=REGISTERED, settings=SETTINGS
    )
    assert [r.scheduled_for for r in runs] == [NOW]
    assert update.next_run_at == NOW + timedelta(seconds=60)
    runs, update = plan_row(
        due_row(next_run_at=None, interval_seconds=None, cron="*/5 * * * *"),
        now=NOW + timedelta(seconds=1),
        registered=REGISTERED,
        settings=SETTINGS,
    )
    assert runs == []
    assert update.next_run_at == NOW + timedelta(minutes=5)


def test_misfire_run_once_fires_one_catchup() -> None:
    now = NOW + timedelta(minutes=10, seconds=30)
    runs, update = plan_row(due_row(), now=now, registered=REGISTERED, settings=SETTINGS)
    triggers = [(r.trigger, r.status) for r in runs]
    # slots 12:00..12:09 are older than 60 s: one catch-up; 12:10 is within grace
    assert triggers == [
        (Trigger.CATCHUP, ExecutionStatus.PENDING),
        (Trigger.SCHEDULE, ExecutionStatus.PENDING),
    ]
    assert runs[1].scheduled_for == NOW + timedelta(minutes=10)
    assert update.next_run_at == NOW + timedelta(minutes=11)


def test_misfire_skip_records_one_missed_row() -> None:
    now = NOW + timedelta(minutes=10, seconds=30)
    runs, _ = plan_row(
        due_row(misfire_policy="skip"), now=now, registered=REGISTERED, settings=SETTINGS
    )
    statuses = [r.status for r in runs]
    assert statuses == [ExecutionStatus.MISSED, ExecutionStatus.PENDING]
    assert "execution_id" not in runs[0].kwargs


def test_misfire_run_all_is_bounded_by_max_catchup() -> None:
    now = NOW + timedelta(minutes=30)
    runs, update = plan_row(
        due_row(misfire_policy="run_all"), now=now, registered=REGISTERED, settings=SETTINGS
    )
    catchups = [r for r in runs if r.trigger is Trigger.CATCHUP]
    assert len(catchups) == SETTINGS.max_catchup
    assert len({r.scheduled_for for r in runs}) == len(runs)
    assert update.next_run_at == NOW + timedelta(minutes=31)


def test_long_outage_does_not_walk_every_slot() -> None:
    every_second = due_row(interval_seconds=Decimal(1), misfire_policy="run_all")
    now = NOW + timedelta(days=30)
    runs, update = plan_row(every_second, now=now, registered=REGISTERED, settings=SETTINGS)
    assert len(runs) <= 2 * SETTINGS.max_catchup
    assert update.next_run_at == now + timedelta(seconds=1)


def test_overlap_skip_and_buffer_one() -> None:
    busy = due_row(overlap_policy="skip", active_runs=1, waiting_runs=0)
    runs, update = plan_row(busy, now=NOW, registered=REGISTERED, settings=SETTINGS)
    assert [r.status for r in runs] == [ExecutionStatus.SKIPPED]
    assert update.runs_added == 0
    buffered = due_row(overlap_policy="buffer_one", active_runs=1, waiting_runs=0)
    runs, _ = plan_row(buffered, now=NOW, registered=REGISTERED, settings=SETTINGS)
    assert [r.status for r in runs] == [ExecutionStatus.PENDING]
    full = due_row(overlap_policy="buffer_one", active_runs=2, waiting_runs=1)
    runs, _ = plan_row(full, now=NOW, registered=REGISTERED, settings=SETTINGS)
    assert [r.status for r in runs] == [ExecutionStatus.SKIPPED]


def test_jitter_is_deterministic_per_slot_and_bounded() -> None:
    a = jitter_s(7, NOW, 30)
    assert a == jitter_s(7, NOW, 30)
    assert 0 <= a < 30
    spread = {jitter_s(7, NOW + timedelta(minutes=i), 30) for i in range(50)}
    assert len(spread) > 40
    runs, _ = plan_row(
        due_row(jitter_seconds=30), now=NOW, registered=REGISTERED, settings=SETTINGS
    )
    assert runs[0].countdown_s == jitter_s(1, NOW, 30)
    assert runs[0].scheduled_for == NOW


def test_end_of_life_by_max_runs_and_end_at() -> None:
    runs, update = plan_row(
        due_row(max_runs=3, total_run_count=2), now=NOW, registered=REGISTERED, settings=SETTINGS
    )
    assert len(runs) == 1
    assert update.enabled is False
    assert update.next_run_at is None
    runs, update = plan_row(
        due_row(end_at=NOW + timedelta(seconds=30)),
        now=NOW,
        registered=REGISTERED,
        settings=SETTINGS,
    )
    assert len(runs) == 1
    assert update.enabled is False


def test_one_off_fires_once_then_ends() -> None:
    once = due_row(interval_seconds=None, run_at=NOW - timedelta(seconds=5), next_run_at=None)
    runs, update = plan_row(once, now=NOW, registered=REGISTERED, settings=SETTINGS)
    assert [r.scheduled_for for r in runs] == [NOW - timedelta(seconds=5)]
    assert update.enabled is False


def test_bad_rows_get_last_error_and_no_next_run() -> None:
    cases = {
        "not registered": due_row(task="nope.task"),
        "invalid cron": due_row(interval_seconds=None, cron="99 * * * *"),
        "time zone": due_row(timezone="Mars/Base"),
        "JSON array": due_row(args={"a": 1}),
        "JSON object": due_row(kwargs=[1]),
        "a number, not NaN": due_row(interval_seconds=Decimal("NaN")),
        "option priority": due_row(options={"priority": "high"}),
        "a number, not Infinity": due_row(interval_seconds=Decimal("Infinity")),
    }
    for expected, bad in cases.items():
        runs, update = plan_row(bad, now=NOW, registered=REGISTERED, settings=SETTINGS)
        assert runs == []
        assert update.last_error is not None
        assert expected in update.last_error, update.last_error
        assert update.next_run_at is None


def test_a_row_whose_planning_fails_is_flagged_and_the_others_still_plan() -> None:
    """A value no check foresaw (here: the slot after one near the end of year 9999 is past
    what a datetime holds) flags that row only."""
    edge = datetime(9999, 12, 29, tzinfo=UTC)
    last_slot = due_row(id=2, start_at=edge, next_run_at=edge, interval_seconds=Decimal(86400 * 7))
    result = plan(
        [due_row(id=1, next_run_at=edge), last_slot, due_row(id=3, next_run_at=edge)],
        now=edge,
        registered=REGISTERED,
        settings=SETTINGS,
    )
    flagged = {u.id: u.last_error for u in result.updates if u.last_error}
    assert list(flagged) == [2]
    assert (flagged[2] or "").startswith("cannot be planned: OverflowError")
    assert sorted(r.schedule_id for r in result.runs) == [1, 3]


def test_horizon_plans_allow_slots_ahead_on_time() -> None:
    every_second = due_row(interval_seconds=Decimal(1), next_run_at=NOW + timedelta(seconds=1))
    runs, update = plan_row(
        every_second,
        now=NOW,
        horizon=NOW + timedelta(seconds=2),
        registered=REGISTERED,
        settings=SETTINGS,
    )
    assert [(r.scheduled_for, r.trigger) for r in runs] == [
        (NOW + timedelta(seconds=1), Trigger.SCHEDULE),
        (NOW + timedelta(seconds=2), Trigger.SCHEDULE),
    ]
    assert update.next_run_at == NOW + timedelta(seconds=3)
    assert update.runs_added == 2


def test_horizon_does_not_turn_lateness_into_a_misfire_or_hide_one() -> None:
    # a slot 30 s late is on time (grace 60 s) whatever the horizon; 90 s late is a misfire
    for late_s, trigger in ((30, Trigger.SCHEDULE), (90, Trigger.CATCHUP)):
        runs, _ = plan_row(
            due_row(next_run_at=NOW - timedelta(seconds=late_s), interval_seconds=Decimal(3600)),
            now=NOW,
            horizon=NOW + timedelta(seconds=2),
            registered=REGISTERED,
            settings=SETTINGS,
        )
        assert [r.trigger for r in runs] == [trigger]


def test_guarded_rows_are_planned_only_when_due() -> None:
    soon = NOW + timedelta(seconds=1)
    for policy in ("skip", "buffer_one"):
        runs, update = plan_row(
            due_row(overlap_policy=policy, next_run_at=soon),
            now=NOW,
            horizon=NOW + timedelta(seconds=2),
            registered=REGISTERED,
            settings=SETTINGS,
        )
        assert runs == []
        assert update.next_run_at == soon
