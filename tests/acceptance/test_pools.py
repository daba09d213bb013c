"""Every Celery pool records every outcome: one real `scheduler worker -P POOL` per pool,
reused across the checks (each pool consumes a queue of its own), on Redis and then on
RabbitMQ (`TEST_AMQP_URL`; the RabbitMQ half is skipped with the reason shown without one).

Time limits are recorded as `timeout` where the pool enforces them; where Celery's pool applies
none the run simply goes on to its end (the README's pool table says which is which).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from config.celery import app
from tests.conftest import SessionServices, broker_in_use
from tests.support.brokers import BrokerUnderTest
from tests.support.procs import module_database, processes, wait_for
from tests.support.runs import finished as finished_within
from tests.support.runs import row, send


def finished(execution_id: str) -> dict[str, Any]:
    """The run's row once terminal; five workers start and run side by side here, so a loaded
    machine gets a wider bound than the single-worker tests."""
    return finished_within(execution_id, timeout_s=60)


@dataclass(frozen=True)
class Pool:
    name: str
    concurrency: int
    soft_limit: bool
    """Celery raises SoftTimeLimitExceeded in the run."""
    hard_limit: bool
    """Celery ends the run at its hard limit (prefork kills the child, gevent raises)."""


POOLS = [
    Pool("prefork", 2, soft_limit=True, hard_limit=True),
    Pool("threads", 4, soft_limit=False, hard_limit=False),
    Pool("solo", 1, soft_limit=False, hard_limit=False),
    Pool("gevent", 8, soft_limit=False, hard_limit=True),
    Pool("eventlet", 8, soft_limit=False, hard_limit=False),
]


@dataclass(frozen=True)
class PoolWorker:
    pool: Pool
    queue: str
    url: str

    def send(self, task: str, **kwargs: Any) -> str:
        return send(task, _options={"queue": self.queue}, **kwargs)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database for the module, exported as DATABASE_URL (workers inherit it)."""
    with module_database() as url:
        yield url


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def pool_broker(
    request: pytest.FixtureRequest, services: SessionServices
) -> Iterator[BrokerUnderTest]:
    """Each broker in turn for the whole module (the workers are started once per broker)."""
    with broker_in_use(request.param, services) as under_test:
        yield under_test


@pytest.fixture(scope="module")
def workers(
    database: str, pool_broker: BrokerUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PoolWorker]]:
    """One worker per pool, all started at once (their start-up overlaps)."""
    with processes(tmp_path_factory.mktemp(f"pools-{pool_broker.kind}")) as procs:
        started: dict[str, PoolWorker] = {}
        for pool in POOLS:
            queue = pool_broker.new_queue()
            procs.start(
                f"worker-{pool.name}",
                "-m", "scheduler.cli", "worker", "-P", pool.name, "-c", str(pool.concurrency),
                "-Q", queue, "-I", "tests.acceptance.tasks_for_tests", "-n", f"{pool.name}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            )  # fmt: skip
            started[pool.name] = PoolWorker(pool, queue, database)
        wait_for(
            lambda: procs.logs(tail=None).count(" ready.") >= len(POOLS),
            timeout_s=90,
            interval_s=0.2,
        )
        logs = procs.logs(tail=None)
        for pool in POOLS:
            banner = "thread" if pool.name == "threads" else pool.name
            assert f"concurrency: {pool.concurrency} ({banner})" in logs  # the pool that runs
        yield started


@pytest.fixture(params=[p.name for p in POOLS])
def worker(request: pytest.FixtureRequest, workers: dict[str, PoolWorker]) -> PoolWorker:
    return workers[request.param]


def test_outcomes_are_recorded(worker: PoolWorker) -> None:
    ids = {
        "success": worker.send("demo.sleep", seconds=0.05),
        "failed": worker.send("demo.fail", message="boom"),
        "retried": worker.send("demo.flaky", fail_times=1),
        "progress": worker.send("demo.progress", steps=4, step_s=0.01),
        "async": worker.send("tests.sleep_async", seconds=0.05),
        "session": worker.send("tests.count_schedules"),
    }
    done = {key: finished(execution_id) for key, execution_id in ids.items()}
    assert done["success"]["status"] == "success"
    assert done["success"]["result_summary"] == "0.05"
    assert done["success"]["duration_ms"] >= 50
    assert done["success"]["started_at"] <= done["success"]["completed_at"]
    assert done["failed"]["status"] == "failed"
    assert done["failed"]["error_type"] == "RuntimeError"
    assert done["failed"]["error_message"] == "boom"
    assert done["retried"]["status"] == "success"
    assert done["retried"]["attempt"] == 2
    assert done["progress"]["status"] == "success"
    assert json.loads(done["progress"]["progress"]) == {"current": 4, "total": 4, "percent": 100}
    assert done["async"]["status"] == "success"
    assert done["async"]["result_summary"] == "0.05"
    assert done["session"]["status"] == "success"
    assert done["session"]["result_summary"] == "0"


def test_a_retry_is_recorded_retrying_before_the_next_attempt(worker: PoolWorker) -> None:
    execution_id = worker.send("tests.retry_once", countdown_s=1.0)
    waiting = wait_for(
        lambda: (r := row(execution_id)) and r["status"] == "retrying" and r, timeout_s=20
    )
    assert waiting["attempt"] == 1
    assert waiting["error_message"] == "first attempt fails"
    done = finished(execution_id)
    assert (done["status"], done["attempt"], done["error_message"]) == ("success", 2, None)


def test_time_limits_are_recorded_as_the_pool_enforces_them(worker: PoolWorker) -> None:
    soft = worker.send("tests.soft_limited", seconds=1.0)
    hard = worker.send("tests.hard_limited", seconds=1.5)
    soft_row, hard_row = finished(soft), finished(hard)
    if worker.pool.soft_limit:
        assert (soft_row["status"], soft_row["error_type"]) == ("timeout", "SoftTimeLimitExceeded")
    else:
        assert soft_row["status"] == "success"
        assert soft_row["duration_ms"] >= 1000
    if worker.pool.hard_limit:
        assert (hard_row["status"], hard_row["error_type"]) == ("timeout", "TimeLimitExceeded")
        assert hard_row["completed_at"] is not None
    else:
        assert hard_row["status"] == "success"
        assert hard_row["duration_ms"] >= 1500


def test_revoked_before_it_runs(worker: PoolWorker) -> None:
    execution_id = str(uuid.uuid4())
    app.control.revoke(execution_id)
    time.sleep(0.5)  # the revoke is a broadcast: let the worker hear it before the message
    from tests.support.runs import send_with_id

    send_with_id(execution_id, "demo.noop", _options={"queue": worker.queue})
    revoked = finished(execution_id)
    assert revoked["status"] == "revoked"
    assert revoked["started_at"] is None


def test_async_bodies_share_one_loop_per_process_and_do_not_block(worker: PoolWorker) -> None:
    in_process = worker.pool.name in ("threads", "gevent", "eventlet")
    runs = [worker.send("tests.loop_identity", seconds=0.3) for _ in range(4)]
    done = [finished(r) for r in runs]
    assert {d["status"] for d in done} == {"success"}
    loops = {d["result_summary"] for d in done}
    processes_seen = {loop.partition(":")[0] for loop in loops}
    assert len(loops) == len(processes_seen)  # one loop per process, whatever the run count
    if in_process:
        # the runs share the worker's one loop and overlap: an awaiting body blocks no other
        assert len(loops) == 1
        assert max(d["started_at"] for d in done) < min(d["completed_at"] for d in done)


def test_worker_accepts_every_pool() -> None:
    from click.testing import CliRunner

    from scheduler.cli import main

    help_text = CliRunner().invoke(main, ["worker", "--help"]).output
    assert "gevent" in help_text
    assert "eventlet" in help_text
    refused = CliRunner().invoke(main, ["worker", "-P", "tornado"])
    assert refused.exit_code == 2
    assert "'prefork', 'threads', 'solo', 'gevent', 'eventlet'" in refused.output
