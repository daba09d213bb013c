"""Real workers and a real beat: `buffer_one` and `skip` never let two runs of a schedule
overlap, auto-pause with several worker processes failing at once, and a chain started by a
scheduled run shows as one tree."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from config.celery import app
from tests.support.procs import Procs, module_database, processes, query, wait_for
from tests.support.status import QUEUED

TERMINAL = ("success", "failed", "timeout", "revoked", "skipped", "missed", "lost")


@pytest.fixture(scope="module")
def worker4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Procs]]:
    """One database and one prefork worker with four processes, shared by this module."""
    log_dir = tmp_path_factory.mktemp("worker4")
    with module_database(flush_broker=True) as url, processes(log_dir) as procs:
        procs.worker("-P", "prefork", "-c", "4", "-I", "tests.acceptance.tasks_for_tests")
        procs.wait_ready()
        yield url, procs


def _runs(url: str, schedule: str) -> list[dict[str, Any]]:
    return query(
        url,
        "SELECT e.*, st.code AS status FROM executions e JOIN schedules s ON s.id = e.schedule_id"
        " JOIN execution_statuses st ON st.id = e.status_id WHERE s.name = $1"
        " ORDER BY e.started_at NULLS LAST",
        schedule,
    )


def test_buffer_one_and_skip_never_overlap_on_real_workers(
    worker4: tuple[str, Procs], broker_url: str, tmp_path: Path
) -> None:
    """A 1.5 s task every second, four worker processes free: runs of one schedule follow
    each other; the buffered one starts only after the one before has finished."""
    url, worker = worker4
    query(
        url,
        "INSERT INTO schedules (name, task, interval_seconds, kwargs, overlap_policy) VALUES "
        "('buffered', 'demo.sleep', 1, '{\"seconds\": 1.5}', 'buffer_one'), "
        "('skipping', 'demo.sleep', 1, '{\"seconds\": 1.5}', 'skip')",
    )
    with processes(tmp_path) as procs:
        procs.beat()

        def enough() -> bool:
            done = [r for r in _runs(url, "buffered") if r["status"] == "success"]
            return len(done) >= 4

        wait_for(enough, timeout_s=60, interval_s=0.2)
        query(url, "UPDATE schedules SET enabled = false")
    for name in ("buffered", "skipping"):
        wait_for(
            lambda n=name: all(r["status"] in TERMINAL for r in _runs(url, n)),  # type: ignore[misc]
            timeout_s=20,
            interval_s=0.2,
        )
        runs = _runs(url, name)
        ran = [r for r in runs if r["started_at"] is not None]
        assert len(ran) >= 2, (name, runs)
        for before, after in pairwise(ran):
            assert after["started_at"] >= before["completed_at"], (name, before, after)
        assert any(r["status"] == "skipped" for r in runs), name
    buffered = [r for r in _runs(url, "buffered") if r["started_at"] is not None]
    # a buffered run waited: it was written before the run ahead of it ended
    assert any(
        after["created_at"] < before["completed_at"] for before, after in pairwise(buffered)
    ), buffered
    assert " ERROR " not in worker.logs(tail=None)


def test_auto_pause_once_with_four_processes_failing_at_once(worker4: tuple[str, Procs]) -> None:
    url, worker = worker4
    query(
        url,
        "INSERT INTO schedules (name, task, cron, enabled, pause_after_failures) "
        "VALUES ('etl', 'demo.fail', '0 3 * * *', true, 3)",
    )
    ids = [uuid.uuid4() for _ in range(8)]
    for execution_id in ids:
        query(
            url,
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id) "
            f"SELECT $1, id, task, '[]', $2, 'manual', {QUEUED} FROM schedules WHERE name = 'etl'",
            execution_id,
            json.dumps({"message": "warehouse down"}),
        )
    for execution_id in ids:
        app.send_task(
            "demo.fail",
            kwargs={"message": "warehouse down", "execution_id": str(execution_id)},
            task_id=str(execution_id),
        )
    wait_for(
        lambda: all(r["status"] == "failed" for r in _runs(url, "etl")) or None,
        timeout_s=30,
        interval_s=0.1,
    )
    workers = {r["worker"] for r in _runs(url, "etl")}
    assert len(workers) >= 2, workers
    row = query(url, "SELECT * FROM schedules WHERE name = 'etl'")[0]
    assert row["enabled"] is False
    assert row["paused_by"] == "auto-pause"
    assert row["paused_reason"] == "paused after 3 consecutive failures (last: warehouse down)"
    logs = worker.logs(tail=None)
    assert logs.count("paused after 3 consecutive failures") == 1, logs[-4000:]


def test_chain_started_by_a_scheduled_run_is_one_tree(worker4: tuple[str, Procs]) -> None:
    from config.settings import get_settings
    from scheduler import api
    from scheduler.beat.dispatcher import Dispatcher
    from scheduler.broker.publisher import Publisher
    from scheduler.cli import main
    from scheduler.runtime.db import get_runtime

    url, _ = worker4
    query(
        url,
        "INSERT INTO schedules (name, task, interval_seconds) "
        "VALUES ('fan-out', 'tests.start_chain', 3600)",
    )
    publisher = Publisher(app)
    try:
        dispatcher = Dispatcher(
            sessions=get_runtime().sessions,
            publisher=publisher,
            registered=None,
            settings=get_settings(),
        )
        assert get_runtime().run(dispatcher.tick(datetime.now(UTC))).published == 1
    finally:
        publisher.close()
    [root] = _runs(url, "fan-out")
    assert root["trigger"] == "schedule"

    def whole_tree() -> list[dict[str, Any]] | None:
        nodes = query(
            url,
            "SELECT e.*, st.code AS status FROM executions e JOIN execution_statuses st "
            "ON st.id = e.status_id WHERE e.id = $1 OR e.root_id = $1 ORDER BY e.created_at",
            root["id"],
        )
        done = len(nodes) == 3 and all(n["status"] == "success" for n in nodes)
        return nodes if done else None

    nodes = wait_for(whole_tree, timeout_s=30, interval_s=0.1)
    by_task = {n["task"]: n for n in nodes}
    assert by_task["demo.noop"]["parent_id"] == root["id"]
    assert by_task["demo.sleep"]["parent_id"] == by_task["demo.noop"]["id"]
    assert {n["root_id"] for n in nodes} == {root["id"]}
    tree = api.run_tree(by_task["demo.sleep"]["id"])
    assert tree[0]["id"] == root["id"]
    assert len(tree) == 3
    assert {r["id"] for r in api.history(root=root["id"])} == {n["id"] for n in nodes}
    detail = api.get_execution(root["id"])
    assert [c["id"] for c in detail["children"]] == [by_task["demo.noop"]["id"]]
    shown = CliRunner().invoke(main, ["show", str(root["id"])], catch_exceptions=False).output
    assert "run tree" in shown
    assert "    demo.sleep  success" in shown.replace("*", " ")
    listed = CliRunner().invoke(
        main, ["history", "--root", str(root["id"]), "--json"], catch_exceptions=False
    )
    assert len(json.loads(listed.output)) == 3
