"""Runs written ahead: held until their time, withdrawn when their schedule changes first,
swept (or withdrawn) when the beat that wrote them is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from config.celery import app
from scheduler.beat.dispatcher import Dispatcher
from scheduler.broker.publisher import Publisher
from scheduler.core.domain import ExecutionStatus
from scheduler.core.writeahead import WriteRate
from tests.support.beat import build_dispatcher
from tests.support.brokers import published_ids
from tests.support.sqlhelp import sql

# an hour ahead of the wall clock: a hand edit made now (updated_at) comes before every slot
BASE = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
SECOND = timedelta(seconds=1)

MakeDispatcher = Callable[[], Dispatcher]


@pytest.fixture
async def make_dispatcher(engine: AsyncEngine) -> AsyncIterator[MakeDispatcher]:
    """Beats of their own (one per call), with a 2 s lookahead."""
    publishers: list[Publisher] = []

    def make() -> Dispatcher:
        publishers.append(Publisher(app))
        return build_dispatcher(
            engine, publishers[-1], frozenset({"demo.noop"}), beat_lookahead_s=2.0
        )

    yield make
    for publisher in publishers:
        publisher.close()


async def add(engine: AsyncEngine, name: str, every_s: int, policy: str = "allow") -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at, overlap_policy) "
        "VALUES (:name, 'demo.noop', :every, :start, :policy)",
        name=name,
        every=every_s,
        start=BASE + SECOND,
        policy=policy,
    )


async def add_burst(engine: AsyncEngine, n: int, slot: datetime) -> None:
    """n hourly `allow` schedules whose first slot is `slot`."""
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "SELECT 'burst-' || i, 'demo.noop', 3600, :slot FROM generate_series(1, :n) i",
        slot=slot,
        n=n,
    )


async def runs(engine: AsyncEngine) -> list[dict[str, object]]:
    return await sql(
        engine, "SELECT id, scheduled_for, status_id FROM executions ORDER BY scheduled_for"
    )


async def test_a_slot_within_the_lookahead_is_written_ahead_and_published_at_its_time(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    beat = make_dispatcher()
    await add(engine, "soon", 60)
    wake = await beat.run_once(BASE)
    written = await runs(engine)
    assert [(r["scheduled_for"], r["status_id"]) for r in written] == [
        (BASE + SECOND, ExecutionStatus.PENDING.id)
    ]
    assert published_ids(broker_url) == []
    assert beat.held == 1
    assert wake == BASE + SECOND  # the held run's time

    await beat.run_once(BASE + SECOND)
    assert published_ids(broker_url) == [str(written[0]["id"])]
    assert [r["status_id"] for r in await runs(engine)] == [ExecutionStatus.QUEUED.id]
    assert beat.held == 0


async def test_guarded_schedules_are_written_when_due_not_ahead(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    beat = make_dispatcher()
    await add(engine, "guarded", 60, policy="skip")
    wake = await beat.run_once(BASE)
    assert await runs(engine) == []
    assert wake == BASE + SECOND
    await beat.run_once(BASE + SECOND)
    assert len(published_ids(broker_url)) == 1


async def test_a_disable_withdraws_runs_written_ahead_and_an_unrelated_edit_does_not(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    beat = make_dispatcher()
    await add(engine, "kept", 1)
    await add(engine, "stopped", 1)
    await beat.run_once(BASE)
    assert beat.held == 4  # slots BASE+1 s and BASE+2 s of both

    await sql(engine, "UPDATE schedules SET description = 'edited' WHERE name = 'kept'")
    await sql(engine, "UPDATE schedules SET enabled = false WHERE name = 'stopped'")
    beat.note_change()
    await beat.run_once(BASE + SECOND / 2)
    counts = await sql(
        engine,
        "SELECT s.name, s.total_run_count, count(e.id) AS runs FROM schedules s "
        "LEFT JOIN executions e ON e.schedule_id = s.id GROUP BY s.name, s.total_run_count "
        "ORDER BY s.name",
    )
    assert counts == [
        {"name": "kept", "total_run_count": 2, "runs": 2},
        {"name": "stopped", "total_run_count": 0, "runs": 0},
    ]
    assert beat.held == 2
    await beat.run_once(BASE + 2 * SECOND)
    assert len(published_ids(broker_url)) == 2


async def test_a_changed_timing_withdraws_and_replans(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    beat = make_dispatcher()
    await add(engine, "retimed", 1)
    await beat.run_once(BASE)
    later = BASE + timedelta(minutes=5)
    await sql(engine, "UPDATE schedules SET interval_seconds = 3600, start_at = :s", s=later)
    beat.note_change()
    await beat.run_once(BASE + SECOND / 2)
    # the old grid's runs are gone; the new grid starts where it says
    assert await runs(engine) == []
    next_run = await sql(engine, "SELECT next_run_at FROM schedules")
    assert next_run == [{"next_run_at": later}]
    assert published_ids(broker_url) == []


async def test_runs_of_a_dead_beat_are_swept_or_withdrawn(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    dead = make_dispatcher()
    await add(engine, "still-on", 1)
    await add(engine, "turned-off", 1)
    await dead.run_once(BASE)  # writes 4 runs ahead, then "dies" holding them
    await sql(engine, "UPDATE schedules SET enabled = false WHERE name = 'turned-off'")

    survivor = make_dispatcher()
    assert await survivor.sweep(BASE + SECOND) == 0  # not before their time + the sweep delay
    assert await survivor.sweep(BASE + 10 * SECOND) == 2
    left = await sql(
        engine,
        "SELECT s.name, e.status_id FROM executions e JOIN schedules s ON s.id = e.schedule_id",
    )
    assert {(r["name"], r["status_id"]) for r in left} == {("still-on", ExecutionStatus.QUEUED.id)}
    assert len(published_ids(broker_url)) == 2


async def test_shutdown_publishes_held_runs_at_their_time(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    beat = make_dispatcher()
    soon = datetime.now(UTC).replace(microsecond=0) + 2 * SECOND
    await sql(
        engine,
        "INSERT INTO schedules (name, task, interval_seconds, start_at) "
        "VALUES ('soon', 'demo.noop', 3600, :s)",
        s=soon,
    )
    await beat.run_once(soon - 1.5 * SECOND)
    assert beat.held == 1
    assert await beat.flush_held() == 1
    assert datetime.now(UTC) >= soon
    assert len(published_ids(broker_url)) == 1


async def test_each_beat_withdraws_its_own_and_the_edit_instant_stays_the_users(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    first, second = make_dispatcher(), make_dispatcher()
    await add(engine, "shared", 1)
    await first.run_once(BASE)  # slots BASE+1 s, BASE+2 s
    await second.run_once(BASE + SECOND)  # slot BASE+3 s
    assert (first.held, second.held) == (2, 1)
    await sql(engine, "UPDATE schedules SET enabled = false")
    edited = await sql(engine, "SELECT updated_at FROM schedules")

    for beat in (first, second):
        beat.note_change()
        await beat.run_once(BASE + SECOND / 2)
        # a withdrawal is the beat's bookkeeping: it leaves the hand edit's instant alone
        assert await sql(engine, "SELECT updated_at FROM schedules") == edited
    assert (first.held, second.held) == (0, 0)
    assert await runs(engine) == []
    assert published_ids(broker_url) == []


async def test_a_burst_too_big_for_the_least_lead_is_written_earlier(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    await add_burst(engine, 300, BASE + 10 * SECOND)
    fast, slow = make_dispatcher(), make_dispatcher()
    await fast.run_once(BASE)  # computes every row's first slot: 10 s away, nothing written
    assert await runs(engine) == []

    # a beat that writes 1,000 rows a second has 0.6 s of work: it waits for the least lead
    fast.write_rate = WriteRate(initial=1_000)
    wake = fast.wake_at(await fast.outlook(BASE), BASE)
    assert wake == BASE + 10 * SECOND - timedelta(seconds=0.25 + 0.6 + 2)

    # one that writes 50 a second needs 12 s with the margin: it writes the burst now
    slow.write_rate = WriteRate(initial=50)
    await slow.run_once(BASE)
    written = await runs(engine)
    assert len(written) == 300
    assert {r["status_id"] for r in written} == {ExecutionStatus.PENDING.id}
    assert slow.held == 300
    assert published_ids(broker_url) == []
    await slow.run_once(BASE + 10 * SECOND)
    assert len(published_ids(broker_url)) == 300
    assert slow.held == 0


async def test_a_burst_of_new_rows_is_written_in_the_pass_that_finds_them(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    # rows inserted with SQL have no first slot yet: the pass that computes it writes the run
    # too when the count of such rows asks for a longer lead than their slot is away
    await add_burst(engine, 300, BASE + 10 * SECOND)
    quick = make_dispatcher()
    quick.write_rate = WriteRate(initial=1_000)  # 300 rows: 0.6 s, the least lead does
    await quick.run_once(BASE)
    assert await runs(engine) == []
    await sql(engine, "UPDATE schedules SET next_run_at = NULL")

    slow = make_dispatcher()
    slow.write_rate = WriteRate(initial=50)  # 300 rows: 12 s with the margin, 14 s lead
    await slow.run_once(BASE)
    written = await runs(engine)
    assert len(written) == 300
    assert {r["scheduled_for"] for r in written} == {BASE + 10 * SECOND}
    assert slow.held == 300
    nexts = await sql(engine, "SELECT DISTINCT next_run_at FROM schedules")
    assert nexts == [{"next_run_at": BASE + 10 * SECOND + timedelta(hours=1)}]
    assert published_ids(broker_url) == []
    await slow.run_once(BASE + 10 * SECOND)
    assert sorted(published_ids(broker_url)) == sorted(str(r["id"]) for r in written)


async def test_two_beats_share_a_burst_written_early(
    engine: AsyncEngine, make_dispatcher: MakeDispatcher, broker_url: str
) -> None:
    await add_burst(engine, 2500, BASE + 10 * SECOND)
    first, second = make_dispatcher(), make_dispatcher()
    await first.run_once(BASE)  # the first slots computed, nothing written yet
    for beat in (first, second):
        beat.write_rate = WriteRate(initial=50)  # both size the lead the same: start now
    await asyncio.gather(first.run_once(BASE), second.run_once(BASE))
    written = await runs(engine)
    assert len(written) == 2500
    assert first.held + second.held == 2500
    assert first.held > 0  # SKIP LOCKED split the batches between them
    assert second.held > 0
    await asyncio.gather(first.run_once(BASE + 10 * SECOND), second.run_once(BASE + 10 * SECOND))
    published = published_ids(broker_url)
    assert sorted(published) == sorted(str(r["id"]) for r in written)
