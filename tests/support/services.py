"""The servers of one session and the databases it hands out (tests and benchmarks alike).

PostgreSQL and Redis come from `<PREFIX>_DATABASE_URL` / `<PREFIX>_BROKER_URL` when both are set
(`TEST_` for the tests, `BENCH_` for the benchmarks), else from embedded servers started in a
temporary directory. A fresh database is cloned from one migrated template (procrastinate's way:
one migration per session, not per database), or created empty for migration tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from scheduler.runtime import migrate
from scheduler.runtime.embedded import EmbeddedServices
from scheduler.runtime.urls import normalize_database_url

T = TypeVar("T")


class SessionServices:
    """The servers of this test session and the migrated template database.

    `env_prefix` names the variables read, `name_prefix` the databases, `tmp_prefix` the
    temporary directory, `redis_db` the Redis database used on a given server whose URL names
    none (the tests keep off database 0 of a shared Redis; 0 leaves the URL as given)."""

    def __init__(
        self,
        *,
        env_prefix: str = "TEST",
        name_prefix: str = "sched",
        tmp_prefix: str = "scheduler-tests-",
        redis_db: int = 13,
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))
        self.tmp.chmod(0o755)
        self.name_prefix = name_prefix
        self.embedded: EmbeddedServices | None = None
        base_db = os.environ.get(f"{env_prefix}_DATABASE_URL")
        base_broker = os.environ.get(f"{env_prefix}_BROKER_URL")
        if not (base_db and base_broker):
            self.embedded = EmbeddedServices(self.tmp / "state", durable=False)
            urls = self.embedded.up()
            base_db = base_db or urls.database_url
            base_broker = base_broker or urls.broker_url
        self.server_url = normalize_database_url(base_db)
        self.broker_url = _with_redis_db(base_broker, 0 if self.embedded else redis_db)
        self.template: str | None = None
        self._lock = threading.Lock()

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.server_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def admin_dsn(self) -> str:
        parts = urlsplit(self.url_for("postgres"))
        return urlunsplit(parts._replace(scheme="postgresql"))

    def ensure_template(self) -> str:
        with self._lock:
            if self.template is None:
                name = f"{self.name_prefix}_tpl_{uuid.uuid4().hex[:10]}"
                run_sync(self._admin(f'CREATE DATABASE "{name}"'))
                run_sync(migrate.upgrade(self.url_for(name)))
                self.template = name
            return self.template

    def create_database(self, *, from_template: bool = True) -> str:
        name = f"{self.name_prefix}_test_{uuid.uuid4().hex[:12]}"
        if from_template:
            template = self.ensure_template()
            run_sync(self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        else:
            run_sync(self._admin(f'CREATE DATABASE "{name}"'))
        return name

    def drop_database(self, name: str) -> None:
        run_sync(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def close(self) -> None:
        if self.template is not None:
            self.drop_database(self.template)
        if self.embedded is not None:
            self.embedded.down()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme.startswith("redis") and parts.path in ("", "/", "/0") and db:
        return urlunsplit(parts._replace(path=f"/{db}"))
    return url


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh loop in another thread (safe inside any test)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


_current: SessionServices | None = None


def current_services() -> SessionServices:
    """The session's services, started in `pytest_configure` (tests/conftest.py)."""
    assert _current is not None, "test services are started in pytest_configure"
    return _current


def set_current_services(services: SessionServices | None) -> None:
    global _current
    _current = services
