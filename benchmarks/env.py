"""What every benchmark shares: the services, a fresh migrated database per benchmark, the
broker, a beat process, and how figures are printed."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from rich.table import Table

from scheduler.cli.format import console as cli_console

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
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
    """Services, a fresh migrated database per benchmark, and the broker."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
        self.tmp.chmod(0o755)
        self.embedded: Any = None
        db, broker = os.environ.get("BENCH_DATABASE_URL"), os.environ.get("BENCH_BROKER_URL")
        if not (db and broker):
            from scheduler.runtime.embedded import EmbeddedServices

            self.embedded = EmbeddedServices(self.tmp / "state", durable=False)
            urls = self.embedded.up()
            db, broker = db or urls.database_url, broker or urls.broker_url
        from scheduler.runtime.urls import normalize_database_url

        self.server = normalize_database_url(db)
        self.broker = broker
        os.environ["BROKER_URL"] = broker
        os.environ["SCHEDULER_STATE_DIR"] = str(self.tmp / "state")
        self.databases: list[str] = []

    def url(self, name: str) -> str:
        base, _, query = self.server.partition("?")
        root = base.rsplit("/", 1)[0]
        return f"{root}/{name}" + (f"?{query}" if query else "")

    def fresh_database(self) -> str:
        from scheduler.runtime import migrate

        name = f"bench_{uuid.uuid4().hex[:10]}"
        run(sql(self.url("postgres"), f'CREATE DATABASE "{name}"'))
        self.databases.append(name)
        url = self.url(name)
        run(migrate.upgrade(url))
        os.environ["DATABASE_URL"] = url
        from config.settings import get_settings

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

    def close(self) -> None:
        from scheduler.runtime.db import close_runtime

        close_runtime()
        for name in self.databases:
            try:
                run(sql(self.url("postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # cleanup is best effort
                console.print(f"could not drop {name}: {exc}")
        if self.embedded is not None:
            self.embedded.down()
        shutil.rmtree(self.tmp, ignore_errors=True)


def machine_info(env: Env) -> dict[str, Any]:
    import celery
    import kombu
    import sqlalchemy

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = run(sql(env.url("postgres"), "SHOW server_version"))[0][0]
    import redis

    client = redis.Redis.from_url(env.broker)
    redis_version = client.info()["redis_version"]
    client.close()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": pg,
        "redis": redis_version,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }


def start_beat(env: Env, url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "beat", "-l", "WARNING"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "BROKER_URL": env.broker},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = Table(title=title, header_style="bold")
    for key in rows[0]:
        t.add_column(key, overflow="fold")
    for row in rows:
        t.add_row(*(str(row.get(key, "")) for key in rows[0]))
    console.print(t)


def vertical_table(title: str, rows: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> None:
    """One column per row, one line per figure: for rows with many figures."""
    if not rows:
        return
    t = Table(title=title, header_style="bold")
    t.add_column("figure")
    for i in range(len(rows)):
        t.add_column(str(i + 1), overflow="fold")
    for key in rows[0]:
        if key not in skip:
            t.add_row(key, *(str(row.get(key, "")) for row in rows))
    console.print(t)
