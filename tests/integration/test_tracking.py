"""Tracked runs in this process (eager calls) against real PostgreSQL: claims, outcomes,
progress, async bodies, outcomes learnt outside the run."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import signals
from celery.exceptions import TimeLimitExceeded, WorkerLostError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from config.celery import app
from config.settings import get_settings
from scheduler.core.domain import ExecutionStatus
from scheduler.store.runs import RunStore
from scheduler.worker.outcome import worker_id
from scheduler.worker.tracked import TrackedTask, tracked_task
from tasks import demo
from tests.support.rows import execution, insert

calls: dict[str, int] = {}


@tracked_task(name="tests.tracking.counted", app=app, shared=False)
def counted(key: str) -> int:
    calls[key] = calls.get(key, 0) + 1
    return calls[key]


@tracked_task(name="tests.tracking.seed_progress", app=app, shared=False, bind=True)
def seed_progress(self: TrackedTask, items: int) -> int:
    """Progress reported the seed's way."""
    for i in range(1, items + 1):
        self.update_state(state="PROGRESS", meta={"current": i, "total": items})
    return items


@tracked_task(
    name="tests.tracking.async_autoretry",
    app=app,
    shared=False,
    autoretry_for=(LookupError,),
    max_retries=2,
    default_retry_delay=0,
)
async def async_autoretry(key: str, session: AsyncSession) -> int:
    """Fails its first attempt; Celery's autoretry must see the async body's exception."""
    calls[key] = calls.get(key, 0) + 1
    if calls[key] == 1:
        raise LookupError("first attempt fails")
    return int((await session.execute(text("SELECT 41 + 1"))).scalar_one())


@pytest.fixture(autouse=True)
def _database(database_url: str) -> None:
    calls.clear()


async def test_claim_is_conditional_and_counts_attempts(session: AsyncSession) -> None:
    repo = RunStore
    now = datetime.now(UTC)
    execution_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
            "VALUES (:id, 'demo.noop', '[]', '{}', 'schedule', :queued)"
        ),
        {"id": execution_id, "queued": ExecutionStatus.QUEUED.id},
    )

    driver = await repo.driver_connection(await session.connection())

    async def claim(*, reclaim: bool = False) -> int | None:
        return await repo.claim_execution(
            driver,
            execution_id,
            task="demo.noop",
            args_json="[]",
            kwargs_json="{}",
            worker="host:1",
            now=now,
            reclaim_running=reclaim,
        )

    async def set_status(status: ExecutionStatus) -> None:
        await session.execute(
            text("UPDATE executions SET status_id = :s WHERE id = :id"),
            {"s": status.id, "id": execution_id},
        )

    assert await claim() == 1
    assert await claim() is None  # a duplicate delivery of a running execution
    await set_status(ExecutionStatus.RETRYING)
    assert await claim() == 2
    assert await claim(reclaim=True) == 3  # a redelivered acks_late message takes over
    await set_status(ExecutionStatus.SUCCESS)
    assert await claim(reclaim=True) is None  # finished runs never run again
    row = (
        (
            await session.execute(
                text("SELECT * FROM executions WHERE id = :id"), {"id": execution_id}
            )
        )
        .mappings()
        .one()
    )
    assert row["trigger"] == "schedule"
    assert row["worker"] == "host:1"
    assert row["started_at"] == now

    direct = uuid.uuid4()
    attempt = await repo.claim_execution(
        driver,
        direct,
        task="demo.noop",
        args_json="[1]",
        kwargs_json='{"a": 1}',
        worker="h:2",
        now=now,
    )
    assert attempt == 1
    created = (
        (await session.execute(text("SELECT * FROM executions WHERE id = :id"), {"id": direct}))
        .mappings()
        .one()
    )
    assert created["trigger"] == "direct"
    assert created["status_id"] == ExecutionStatus.RUNNING.id
    assert created["args"] == [1]
    await session.rollback()


def test_eager_calls_record_success_failure_and_retries() -> None:
    ok = demo.sleep.apply(args=(0.02,))
    record = execution(ok.id)
    assert record["status"] == "success"
    assert record["trigger"] == "direct"
    assert record["worker"] == worker_id()
    assert record["attempt"] == 1
    assert record["duration_ms"] >= 20
    assert record["result_summary"] == "0.02"
    assert record["completed_at"] >= record["started_at"]

    bad = demo.fail.apply(kwargs={"message": "boom"})
    record = execution(bad.id)
    assert record["status"] == "failed"
    assert (record["error_type"], record["error_message"]) == ("RuntimeError", "boom")
    assert "RuntimeError: boom" in record["traceback"]
    assert record["completed_at"] is not None

    flaky = demo.flaky.apply(kwargs={"fail_times": 2})
    record = execution(flaky.id)
    assert record["status"] == "success"
    assert record["attempt"] == 3
    assert record["error_message"] is None


def test_always_eager_delay_is_recorded() -> None:
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        result = demo.sleep.delay(0.01)
    finally:
        app.conf.task_always_eager = previous
    record = execution(result.id)
    assert (record["status"], record["trigger"]) == ("success", "direct")


def test_beat_row_is_claimed_and_execution_id_passed_or_stripped() -> None:
    execution_id = insert(ExecutionStatus.QUEUED, task="tests.tracking.counted")
    counted.apply(kwargs={"key": "k", "execution_id": execution_id}, task_id=execution_id)
    record = execution(execution_id)
    assert (record["status"], record["trigger"], record["attempt"]) == ("success", "manual", 1)
    assert calls == {"k": 1}  # `counted` does not declare execution_id: it was stripped


def test_duplicate_of_a_finished_run_runs_nothing() -> None:
    done_at = datetime.now(UTC) - timedelta(minutes=5)
    execution_id = insert(
        ExecutionStatus.SUCCESS, task="tests.tracking.counted", completed_at=done_at
    )
    counted.apply(kwargs={"key": "dup"}, task_id=execution_id)
    running_id = insert(ExecutionStatus.RUNNING, task="tests.tracking.counted")
    counted.apply(kwargs={"key": "dup"}, task_id=running_id)
    assert calls == {}
    assert execution(execution_id)["completed_at"] == done_at
    assert execution(running_id)["status"] == "running"


def test_progress_is_throttled_and_the_last_value_always_lands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULER_WORKER_PROGRESS_THROTTLE_S", "3600")
    get_settings.cache_clear()
    writes: list[dict[str, Any]] = []
    original = RunStore.record_progress

    async def counting(driver: Any, execution_id: Any, progress_json: str, **kw: Any) -> None:
        writes.append(json.loads(progress_json))
        await original(driver, execution_id, progress_json, **kw)

    monkeypatch.setattr(RunStore, "record_progress", staticmethod(counting))
    result = demo.progress.apply(kwargs={"steps": 200, "step_s": 0})
    assert writes == [{"current": 1, "total": 200, "percent": 0}]  # then throttled
    assert execution(result.id)["progress"] == {
        "current": 200,
        "total": 200,
        "percent": 100,
    }

    seed = seed_progress.apply(kwargs={"items": 3})
    assert execution(seed.id)["progress"] == {"current": 3, "total": 3, "percent": 100}


def test_async_body_autoretries_and_uses_the_process_session() -> None:
    result = async_autoretry.apply(kwargs={"key": "a"})
    record = execution(result.id)
    assert record["status"] == "success"
    assert record["attempt"] == 2
    assert record["result_summary"] == "42"
    assert calls == {"a": 2}


def test_outcomes_learnt_outside_the_run() -> None:
    """The worker's main process learns of hard time limits, dead children and revokes."""
    task = app.tasks["demo.sleep"]
    timed_out = insert(ExecutionStatus.RUNNING, started_at=datetime.now(UTC))
    signals.task_failure.send(sender=task, task_id=timed_out, exception=TimeLimitExceeded(1.0))
    record = execution(timed_out)
    assert (record["status"], record["error_type"]) == ("timeout", "TimeLimitExceeded")
    assert record["completed_at"] is not None
    assert record["duration_ms"] is not None

    died = insert(ExecutionStatus.RUNNING, started_at=datetime.now(UTC))
    signals.task_failure.send(sender=task, task_id=died, exception=WorkerLostError("killed"))
    assert execution(died)["status"] == "lost"

    queued = insert(ExecutionStatus.QUEUED)

    class Request:
        id = queued

    signals.task_revoked.send(sender=task, request=Request(), terminated=False)
    record = execution(queued)
    assert record["status"] == "revoked"
    assert record["started_at"] is None

    finished = insert(ExecutionStatus.SUCCESS, completed_at=datetime.now(UTC))
    signals.task_failure.send(sender=task, task_id=finished, exception=TimeLimitExceeded(1.0))
    assert execution(finished)["status"] == "success"  # terminal rows never change


def test_a_worker_success_is_written_in_the_background_and_lands_by_shutdown() -> None:
    from scheduler.runtime.db import close_runtime

    execution_id = insert(ExecutionStatus.QUEUED, task="tests.tracking.counted")
    counted.push_request(id=execution_id, is_eager=False, delivery_info={})
    try:
        assert counted("background") == 1
    finally:
        counted.pop_request()
    close_runtime()  # what a worker process does on shutdown: it waits for the write
    row = execution(execution_id)
    assert row["status"] == "success"
    assert row["result_summary"] == "1"
    assert row["completed_at"] is not None
