"""Beat and worker processes on each broker (Redis, RabbitMQ): a run sent to a queue no worker
has declared waits there and runs when a worker for it starts; a run whose message vanished
after confirmation is published again, or ends `lost`, and an overlap guard is not blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scheduler.core.domain import ExecutionStatus
from tests.support.brokers import BrokerUnderTest
from tests.support.procs import processes, query, wait_for

QUEUED, SUCCESS, LOST = (
    s.id for s in (ExecutionStatus.QUEUED, ExecutionStatus.SUCCESS, ExecutionStatus.LOST)
)


def test_runs_wait_in_undeclared_queues_vanished_ones_are_sent_again_or_lost_guard_unblocks(
    database_url: str, broker: BrokerUnderTest, tmp_path: Path
) -> None:
    """`waiting`: a schedule on a queue no worker has declared; its run must stay `queued`
    with its message in that queue (past the queued bound too: its queue is not empty) and run
    once a worker for it starts. `guarded`: an overlap-guarded schedule whose message vanishes
    after confirmation: published again, then `lost` once every copy vanished past the longer
    bound; its later slots then run."""
    waiting_queue, guarded_queue = broker.queue, broker.new_queue()
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, overlap_policy, options) VALUES "
        "('waiting', 'demo.noop', 3600, 'allow', $1), ('guarded', 'demo.noop', 2, 'skip', $2)",
        json.dumps({"queue": waiting_queue}),
        json.dumps({"queue": guarded_queue}),
    )
    short_bounds = {
        "SCHEDULER_QUEUED_TIMEOUT_S": "1",
        "SCHEDULER_QUEUED_LOST_AFTER_S": "5",
        "SCHEDULER_BEAT_MAX_SLEEP_S": "0.5",
    }

    def runs(name: str) -> list[dict[str, object]]:
        return query(
            database_url,
            "SELECT e.id, e.status_id, e.error_type FROM executions e JOIN schedules s "
            "ON s.id = e.schedule_id WHERE s.name = $1 ORDER BY e.scheduled_for",
            name,
        )

    with processes(tmp_path) as procs:
        procs.beat(short_bounds)
        waiting = wait_for(lambda: [r for r in runs("waiting") if r["status_id"] == QUEUED], 30)
        assert broker.message_ids(waiting_queue) == [str(waiting[0]["id"])], procs.logs()
        first = wait_for(lambda: runs("guarded"), timeout_s=10)[0]
        wait_for(lambda: broker.depth(guarded_queue) == 1, timeout_s=10)
        broker.purge(guarded_queue)  # confirmed, then gone: as if the broker lost it
        wait_for(lambda: broker.message_ids(guarded_queue) == [str(first["id"])], timeout_s=15)
        wait_for(lambda: "published again 1 runs" in procs.logs(tail=None), timeout_s=5)

        def lost() -> bool:
            broker.purge(guarded_queue)  # every copy vanishes: never claimed
            return runs("guarded")[0]["status_id"] == LOST

        wait_for(lost, timeout_s=30, interval_s=0.2)
        assert runs("guarded")[0]["error_type"] == "NeverClaimed"
        # the guard unblocked: a later slot is queued
        wait_for(lambda: any(r["status_id"] == QUEUED for r in runs("guarded")[1:]), 15)
        # the waiting run was neither published again nor lost: its queue held its message
        assert runs("waiting")[0]["status_id"] == QUEUED
        assert broker.message_ids(waiting_queue) == [str(waiting[0]["id"])]
        procs.worker("-P", "threads", "-c", "2", "-Q", f"{waiting_queue},{guarded_queue}")
        wait_for(lambda: runs("waiting")[0]["status_id"] == SUCCESS, timeout_s=60, interval_s=0.1)
        wait_for(lambda: any(r["status_id"] == SUCCESS for r in runs("guarded")), timeout_s=30)
        assert runs("guarded")[0]["status_id"] == LOST
        assert broker.depth(waiting_queue) == 0


def test_an_unsupported_broker_scheme_is_refused_in_one_line() -> None:
    """Checked when the Celery app is configured, before any command runs (here the beat)."""
    env = {**os.environ, "BROKER_URL": "sqs://key:secret@", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "beat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "scheme 'sqs' is not supported" in lines[0]
    assert "redis://" in lines[0]
    assert "amqp://" in lines[0]
    assert "secret" not in result.stderr
