"""Tracked tasks on a real worker: every outcome leaves a true record."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest
from celery import chain

from config.celery import app
from tests.support.procs import Procs, module_database, processes, query, wait_for
from tests.support.runs import finished, row, send


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Procs]]:
    """One database and one prefork worker shared by this module's tests."""
    log_dir = tmp_path_factory.mktemp("worker")
    with module_database() as url, processes(log_dir) as procs:
        procs.worker("-P", "prefork", "-c", "2", "-I", "tests.acceptance.tasks_for_tests")
        procs.wait_ready()
        yield url, procs


def test_success_failure_and_retry(worker_env: tuple[str, Procs]) -> None:
    ok = finished(send("demo.sleep", seconds=0.05))
    assert ok["status"] == "success"
    assert ok["duration_ms"] >= 50
    assert ok["attempt"] == 1
    assert ok["worker"]
    assert ok["started_at"] <= ok["completed_at"]
    assert ok["result_summary"] == "0.05"

    bad = finished(send("demo.fail", message="boom"))
    assert bad["status"] == "failed"
    assert bad["error_type"] == "RuntimeError"
    assert bad["error_message"] == "boom"
    assert "RuntimeError: boom" in bad["traceback"]

    flaky = finished(send("demo.flaky", fail_times=2))
    assert flaky["status"] == "success"
    assert flaky["attempt"] == 3
    assert flaky["error_message"] is None


def test_time_limits_end_as_timeout(worker_env: tuple[str, Procs]) -> None:
    soft = finished(send("tests.soft_limited", seconds=3))
    assert soft["status"] == "timeout"
    assert soft["error_type"] == "SoftTimeLimitExceeded"
    hard = finished(send("tests.hard_limited", seconds=10))
    assert hard["status"] == "timeout"
    assert hard["error_type"] == "TimeLimitExceeded"
    assert hard["completed_at"] is not None


def test_progress_is_visible_mid_run_and_final(worker_env: tuple[str, Procs]) -> None:
    execution_id = send("demo.progress", steps=20, step_s=0.1)
    mid = wait_for(
        lambda: (r := row(execution_id)) and r["status"] == "running" and r["progress"] and r,
        timeout_s=20,
    )
    progress = json.loads(mid["progress"])
    assert 0 < progress["current"] < 20
    done = finished(execution_id)
    assert json.loads(done["progress"]) == {"current": 20, "total": 20, "percent": 100}


def test_revoke_records_revoked(worker_env: tuple[str, Procs]) -> None:
    execution_id = send("demo.noop", _options={"countdown": 3})
    app.control.revoke(execution_id)
    revoked = finished(execution_id)
    assert revoked["status"] == "revoked"
    assert revoked["started_at"] is None


def test_duplicate_delivery_runs_once(worker_env: tuple[str, Procs]) -> None:
    execution_id = send("demo.sleep", seconds=0.2)
    first = finished(execution_id)
    app.send_task(
        "demo.sleep", kwargs={"seconds": 0.2, "execution_id": execution_id}, task_id=execution_id
    )
    marker = send("demo.noop")
    finished(marker)
    again = row(execution_id)
    assert again["attempt"] == 1
    assert again["completed_at"] == first["completed_at"]
    _, procs = worker_env
    assert "duplicate skipped" in procs.logs()


def test_direct_chained_and_eager_calls_are_recorded(worker_env: tuple[str, Procs]) -> None:
    direct = app.send_task("demo.noop")
    assert finished(direct.id)["trigger"] == "direct"
    flow = chain(
        app.signature("demo.noop", immutable=True),
        app.signature("demo.sleep", args=(0.01,), immutable=True),
    )
    result = flow.apply_async()
    last = finished(result.id)
    assert last["status"] == "success"
    assert last["trigger"] == "direct"
    first_id = result.parent.id
    assert finished(first_id)["status"] == "success"
    from tasks.demo import noop

    eager = noop.apply()
    record = row(eager.id)
    assert record["status"] == "success"
    assert record["trigger"] == "direct"


def test_async_body_uses_the_worker_session(worker_env: tuple[str, Procs]) -> None:
    url, _ = worker_env
    query(url, "INSERT INTO schedules (name, task, cron) VALUES ('x', 'demo.noop', '@daily')")
    done = finished(send("tests.count_schedules"))
    assert done["status"] == "success"
    assert done["result_summary"] == "1"


def test_seed_pattern_works_unchanged(worker_env: tuple[str, Procs]) -> None:
    ok = finished(send("tests.seed_pattern"))
    assert ok["status"] == "success"
    assert "processed" in ok["result_summary"]
    failed = finished(send("tests.seed_pattern", fail=True))
    assert failed["status"] == "failed"
    assert failed["error_message"] == "seed failure"


def test_killed_worker_child_ends_lost(worker_env: tuple[str, Procs]) -> None:
    execution_id = send("demo.sleep", seconds=30)
    running = wait_for(
        lambda: (r := row(execution_id)) and r["status"] == "running" and r, timeout_s=20
    )
    pid = int(running["worker"].rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)
    lost = finished(execution_id)
    assert lost["status"] == "lost"
    assert lost["completed_at"] is not None


def test_killed_acks_late_run_is_redelivered_as_a_new_attempt(
    worker_env: tuple[str, Procs],
) -> None:
    """acks_late + reject_on_worker_lost: the broker hands the message back and the run goes
    on as attempt 2 (a redelivery, not a refused duplicate), with no `lost` in between."""
    execution_id = send("tests.acks_late_sleep", seconds=30)
    running = wait_for(
        lambda: (r := row(execution_id)) and r["status"] == "running" and r, timeout_s=20
    )
    os.kill(int(running["worker"].rpartition(":")[2]), signal.SIGKILL)
    done = finished(execution_id)
    assert done["status"] == "success"
    assert done["attempt"] == 2
    assert done["result_summary"] == "redelivered"
    assert done["worker"] != running["worker"]
