"""The worker's run path against real PostgreSQL: claims on the calling thread's own
connection, successes written in batches (and one by one when a batch is refused)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from scheduler.core.domain import ExecutionStatus
from scheduler.runtime.db import close_runtime, get_runtime
from scheduler.runtime.thread_connections import ThreadConnections
from scheduler.store.runs import RunStore
from scheduler.worker.successes import SuccessBatch
from tests.support.rows import execution, insert, rows


async def _backend_pid(driver: Any) -> int:
    return int(await driver.fetchval("SELECT pg_backend_pid()"))


def test_each_thread_claims_on_a_connection_of_its_own(database_url: str) -> None:
    runtime = get_runtime()
    seen: dict[str, list[int]] = {}

    def work(name: str) -> None:
        seen[name] = [runtime.threads.run(_backend_pid) for _ in range(3)]

    workers = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)
    assert sorted(seen) == ["t0", "t1", "t2"]
    for pids in seen.values():
        assert len(set(pids)) == 1, "a thread keeps its connection from one statement to the next"
    assert len({pids[0] for pids in seen.values()}) == 3, "no two threads share a connection"

    execution_id = insert(ExecutionStatus.QUEUED)
    attempt = runtime.threads.run(
        RunStore.claim_execution,
        execution_id,
        task="demo.noop",
        args_json="[]",
        kwargs_json="{}",
        worker="w@host:1",
        now=datetime.now(UTC),
    )
    assert attempt == 1
    assert execution(execution_id)["status"] == "running"

    close_runtime()
    left = rows(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY(:pids)",
        pids=[pids[0] for pids in seen.values()],
    )
    assert left[0]["n"] == 0, "closing the runtime closes every thread's connection"


def test_a_thread_connection_found_dead_is_replaced(database_url: str) -> None:
    threads = ThreadConnections(database_url)
    try:
        first = threads.run(_backend_pid)
        rows("SELECT pg_terminate_backend(:pid)", pid=first)
        second = threads.run(_backend_pid)
        assert second != first
    finally:
        threads.close()


async def test_a_thread_whose_loop_is_running_hands_the_statement_over(database_url: str) -> None:
    assert asyncio.get_running_loop() is not None
    threads = get_runtime().threads
    assert not threads.usable()
    assert await asyncio.to_thread(threads.usable)


def _running_rows(count: int) -> list[str]:
    return [
        insert(ExecutionStatus.RUNNING, started_at=datetime.now(UTC), worker="w@host:1")
        for _ in range(count)
    ]


def _success(summary: str | None = None) -> dict[str, Any]:
    return {
        "status_id": ExecutionStatus.SUCCESS.id,
        "duration_ms": 7,
        "completed_at": datetime.now(UTC),
        "result_summary": summary,
        "progress_json": '{"current": 1, "total": 1, "percent": 100}',
    }


def test_successes_that_arrive_together_are_written_in_one_transaction(
    database_url: str,
) -> None:
    runtime = get_runtime()
    ids = _running_rows(40)
    batch = SuccessBatch()

    def add(part: list[str]) -> None:
        for execution_id in part:
            batch.add(runtime, execution_id, _success(execution_id))

    adders = [threading.Thread(target=add, args=(part,)) for part in (ids[:20], ids[20:])]
    for thread in adders:
        thread.start()
    for thread in adders:
        thread.join(timeout=30)
    assert runtime.drain(timeout=30) == 0

    found = rows(
        "SELECT id::text AS id, status_id, duration_ms, result_summary, progress, "
        "completed_at, xmin::text AS tx FROM executions WHERE id = ANY(:ids)",
        ids=[uuid.UUID(i) for i in ids],
    )
    assert len(found) == 40
    for row in found:
        assert row["status_id"] == ExecutionStatus.SUCCESS.id
        assert row["duration_ms"] == 7
        assert row["result_summary"] == row["id"]
        assert row["progress"] == {"current": 1, "total": 1, "percent": 100}
        assert row["completed_at"] is not None
    assert len({row["tx"] for row in found}) < 10, "successes of one moment share a statement"


def test_a_batch_the_database_refuses_is_written_outcome_by_outcome(database_url: str) -> None:
    runtime = get_runtime()
    ids = _running_rows(5)
    batch = SuccessBatch()
    for execution_id in ids[:4]:
        batch.add(runtime, execution_id, _success("fine"))
    # a text PostgreSQL refuses (NUL) fails the whole statement
    batch.add(runtime, ids[4], _success("bad\x00text"))
    assert runtime.drain(timeout=60) == 0

    for execution_id in ids[:4]:
        row = execution(execution_id)
        assert (row["status"], row["result_summary"]) == ("success", "fine")
    refused = execution(ids[4])
    assert refused["status"] == "success"
    assert refused["completed_at"] is not None
    assert refused["error_type"] == "OutcomeNotStored"


def test_a_success_for_a_run_no_longer_running_changes_nothing(database_url: str) -> None:
    runtime = get_runtime()
    (execution_id,) = _running_rows(1)

    async def lose() -> None:
        async with runtime.session() as session, session.begin():
            await session.execute(
                text("UPDATE executions SET status_id = :lost WHERE id = :id"),
                {"lost": ExecutionStatus.LOST.id, "id": uuid.UUID(execution_id)},
            )

    runtime.run(lose())
    batch = SuccessBatch()
    batch.add(runtime, execution_id, _success("late"))
    assert runtime.drain(timeout=30) == 0
    row = execution(execution_id)
    assert (row["status"], row["result_summary"]) == ("lost", None)


def test_threads_past_the_limit_hand_their_statements_over(database_url: str) -> None:
    threads = ThreadConnections(database_url, limit=2)
    usable: list[bool] = []
    gate = threading.Barrier(3)

    def work() -> None:
        if threads.usable():
            threads.run(_backend_pid)
            usable.append(True)
        gate.wait(timeout=30)

    def late() -> None:
        gate.wait(timeout=30)
        usable.append(threads.usable())

    try:
        first = [threading.Thread(target=work) for _ in range(2)]
        for thread in first:
            thread.start()
        third = threading.Thread(target=late)
        third.start()
        for thread in [*first, third]:
            thread.join(timeout=30)
        assert sorted(usable) == [False, True, True]
    finally:
        threads.close()


def test_a_statement_interrupted_while_waiting_leaves_no_broken_connection(
    database_url: str,
) -> None:
    class Interrupted(Exception):
        pass

    def interrupt(*_: Any) -> None:
        raise Interrupted

    threads = ThreadConnections(database_url)
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        first = threads.run(_backend_pid)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        started = time.monotonic()
        with pytest.raises(Interrupted):
            threads.run(lambda driver: driver.execute("SELECT pg_sleep(20)"))
        assert time.monotonic() - started < 10
        assert threads.run(_backend_pid) != first, "the interrupted connection was replaced"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        threads.close()
