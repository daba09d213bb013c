"""A worker node on another host dies whole (no main process left to report it): the
reaper learns it from Celery's own inspection and ends its runs `lost`."""

from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.celery import app
from scheduler.beat.reaper import WorkerWatch, reap_lost
from scheduler.runtime.db import close_runtime, get_runtime
from tests.support.procs import processes, query, wait_for
from tests.support.status import QUEUED

NODE = "remote@elsewhere.invalid"


def row(database_url: str, execution_id: str) -> dict[str, Any]:
    rows = query(
        database_url,
        "SELECT e.*, s.code AS status FROM executions e "
        "JOIN execution_statuses s ON s.id = e.status_id WHERE e.id = $1",
        uuid.UUID(execution_id),
    )
    return rows[0]


def test_a_node_that_stops_answering_ends_its_runs_lost(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    with processes(tmp_path) as procs:
        node = procs.worker("-P", "threads", "-c", "2", "-Q", "remote", "-n", NODE)
        wait_for(lambda: "ready." in procs.logs(), timeout_s=60, interval_s=0.1)
        execution_id = str(uuid.uuid4())
        query(
            database_url,
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
            f"VALUES ($1, 'demo.sleep', '[]', $2, 'manual', {QUEUED})",
            uuid.UUID(execution_id),
            json.dumps({"seconds": 60}),
        )
        app.send_task(
            "demo.sleep",
            kwargs={"seconds": 60, "execution_id": execution_id},
            task_id=execution_id,
            queue="remote",
        )
        running = wait_for(
            lambda: (r := row(database_url, execution_id))["status"] == "running" and r,
            timeout_s=30,
        )
        assert running["worker"] == f"{NODE}:{node.pid}"  # threads pool: the main process

        watch = WorkerWatch(app, timeout_s=1.0, misses=2)
        assert watch.observe()
        assert watch.observe()
        assert not watch.gone(running["worker"])  # answering, and the process is its own

        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
        assert watch.observe()
        assert not watch.gone(running["worker"])  # one silent inspection is not enough
        assert watch.observe()
        assert watch.gone(running["worker"])
        assert not watch.gone("never-answered@host:1")  # nodes never seen are not judged

    async def reap() -> int:
        async with get_runtime(database_url).sessions() as session, session.begin():
            later = datetime.now(UTC) + timedelta(minutes=1)
            return await reap_lost(session, now=later, watch=watch)

    try:
        assert get_runtime(database_url).run(reap()) == 1
    finally:
        close_runtime()
    lost = row(database_url, execution_id)
    assert lost["status"] == "lost"
    assert lost["error_message"] == "the worker process is gone"
