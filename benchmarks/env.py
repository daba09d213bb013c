"""What every benchmark shares: the services and a fresh migrated database per benchmark (the
tests' `SessionServices`, read from BENCH_DATABASE_URL / BENCH_BROKER_URL), the broker, and the
beat and worker processes the families start."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from benchmarks.processes import children, pin
from scheduler.cli.format import console as cli_console
from tests.support.services import SessionServices

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
console = cli_console()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def sql(url: str, statement: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn(url))
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


class Env:
    """The session's services, a fresh migrated database per benchmark, and the broker (used
    as given: BENCH_BROKER_URL names the Redis database, flushed freely)."""

    def __init__(self) -> None:
        self.services = SessionServices(
            env_prefix="BENCH", name_prefix="bench", tmp_prefix="scheduler-bench-", redis_db=0
        )
        self.tmp = self.services.tmp
        self.broker = self.services.broker_url
        os.environ["BROKER_URL"] = self.broker
        os.environ["SCHEDULER_STATE_DIR"] = str(self.tmp / "state")
        self.databases: list[str] = []

    def url(self, name: str) -> str:
        return self.services.url_for(name)

    def fresh_database(self, *, migrated: bool = True) -> str:
        """A database of its own (cloned from the migrated template, or empty), exported as
        DATABASE_URL; dropped by `close`."""
        from config.settings import get_settings

        name = self.services.create_database(from_template=migrated)
        self.databases.append(name)
        url = self.url(name)
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        return url

    def flush_broker(self) -> None:
        import redis

        client = redis.Redis.from_url(self.broker)
        client.flushdb()
        client.close()

    def queue_length(self, queue: str = "celery") -> int:
        import redis

        client = redis.Redis.from_url(self.broker)
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    def service_pids(self) -> list[int]:
        """The processes of the embedded PostgreSQL and Redis (none for services given by
        URL: those are not the benchmark's to pin)."""
        embedded = self.services.embedded
        if embedded is None:
            return []
        postmaster = int((embedded.postgres.data / "postmaster.pid").read_text().split()[0])
        redis_pid = embedded.redis.pid()
        return [postmaster, *children(postmaster), *([redis_pid] if redis_pid else [])]

    @contextlib.contextmanager
    def services_apart(self) -> Iterator[set[int] | None]:
        """The embedded services and this process on the last CPU, for the duration: yields
        the other CPUs, for the processes measured (None where the services are not embedded
        or the machine has one CPU, and nothing is pinned)."""
        cpus = sorted(os.sched_getaffinity(0))
        pids = self.service_pids()
        if len(cpus) < 2 or not pids:
            yield None
            return
        apart = {cpus[-1]}
        for pid in [0, *pids]:
            pin(pid, apart)
        try:
            yield set(cpus[:-1])
        finally:
            for pid in [0, *self.service_pids()]:
                pin(pid, set(cpus))

    def close(self) -> None:
        from scheduler.runtime.db import close_runtime

        close_runtime()
        for name in self.databases:
            try:
                self.services.drop_database(name)
            except Exception as exc:  # cleanup is best effort
                console.print(f"could not drop {name}: {exc}")
        self.services.close()


def start_beat(
    env: Env, url: str, log: Path, *, broker_url: str | None = None, **settings: str
) -> subprocess.Popen[bytes]:
    """A `scheduler beat` on database `url` (and `broker_url`, else the session's broker), with
    extra environment variables `settings`, its output in `log`."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "beat", "-l", "WARNING"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "BROKER_URL": broker_url or env.broker,
                 **settings},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def start_worker(
    url: str,
    log: Path,
    pool: str = "solo",
    concurrency: int = 1,
    settings: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    """A Celery worker of `config.celery` with the benchmarks' tasks, on database `url`, with
    extra environment variables `settings`, on `cpus` when given."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config.celery", "worker",
                "-P", pool, "-c", str(concurrency), "-l", "WARNING", "-I", "benchmarks.tasks",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, **(settings or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus),
        )  # fmt: skip


def insert_queued(url: str, task: str, ids: list[str]) -> None:
    """Runs of `task` with these ids, queued (as the beat leaves them for a worker)."""
    from scheduler.core.domain import ExecutionStatus

    run(
        sql(
            url,
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
            "SELECT unnest($1::uuid[]), $2, '[]', '{}', 'manual', $3",
            ids,
            task,
            ExecutionStatus.QUEUED.id,
        )
    )


def send_until_done(client: Any, task: str, ids: Iterable[str], bound_s: float = 300) -> float:
    """Send `task` once per id in one producer batch, then a `bench.marker`: seconds until a
    worker has run the marker (`client`, a Redis client, sees the key it sets)."""
    from config.celery import app

    key = f"bench-marker-{uuid.uuid4()}"
    start = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
        for execution_id in ids:
            app.send_task(
                task, kwargs={"execution_id": execution_id}, task_id=execution_id,
                producer=producer,
            )  # fmt: skip
        app.send_task("bench.marker", args=(key,), producer=producer)
    while not client.get(key):
        if time.perf_counter() - start > bound_s:
            raise RuntimeError(f"{task}: the worker did not finish")
        time.sleep(0.002)
    return time.perf_counter() - start
