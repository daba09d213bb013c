"""Real beat and worker processes for acceptance tests, always cleaned up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


class Procs:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """`python *args`, run under the command `wrap` when given (e.g. faketime)."""
        with (self.log_dir / f"{name}-{len(self.running)}.log").open("ab") as log:
            proc = subprocess.Popen(
                [*wrap, sys.executable, *args],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    def beat(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("beat", "-m", "scheduler.cli", "beat", "-l", "INFO", env=env)

    def beat_under(self, wrap: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A beat run under the command `wrap` (e.g. faketime)."""
        return self.start("beat", "-m", "scheduler.cli", "beat", "-l", "INFO", env=env, wrap=wrap)

    def worker(self, *extra: str) -> subprocess.Popen[bytes]:
        return self.start(
            "worker",
            "-m",
            "celery",
            "-A",
            "config.celery",
            "worker",
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *extra,
        )

    def wait_ready(self, timeout_s: float = 60, interval_s: float = 0.1) -> None:
        """Until a worker started here logs `ready.`."""
        wait_for(lambda: "ready." in self.logs(), timeout_s=timeout_s, interval_s=interval_s)

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.running:
            _wait_group_gone(proc.pid, deadline)

    def logs(self, tail: int | None = 3000) -> str:
        texts = (p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))
        return "\n".join(t if tail is None else t[-tail:] for t in texts)


@contextmanager
def processes(log_dir: Path) -> Iterator[Procs]:
    procs = Procs(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


@contextmanager
def exported(name: str, value: str) -> Iterator[None]:
    """`name=value` in this process's environment (processes started meanwhile inherit it),
    the settings read again; afterwards the previous value restored and the settings read
    again."""
    from config.settings import get_settings

    previous = os.environ.get(name)
    os.environ[name] = value
    get_settings.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        get_settings.cache_clear()


@contextmanager
def module_database(*, flush_broker: bool = False) -> Iterator[str]:
    """A migrated database for a module-scoped fixture, exported as DATABASE_URL (processes
    started inside inherit it); afterwards the process's runtime is closed, the previous
    DATABASE_URL restored and the database dropped. `flush_broker` empties the test Redis
    first: messages other tests left would run on this module's workers."""
    import redis

    from scheduler.runtime.db import close_runtime
    from tests.support.services import current_services

    services = current_services()
    name = services.create_database()
    url = services.url_for(name)
    try:
        with exported("DATABASE_URL", url):
            if flush_broker:
                client = redis.Redis.from_url(services.broker_url)
                try:
                    client.flushdb()
                finally:
                    client.close()
            try:
                yield url
            finally:
                close_runtime()
    finally:
        services.drop_database(name)


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    """`GET url` answers 200 (False while nothing listens yet)."""
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM to the process group of `proc`, SIGKILL if it has not exited in `timeout_s`."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def require_binary(name: str) -> str:
    """The path of `name`; skips the test with the reason when it is missing (fails when
    CI=true: CI must run it)."""
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {name})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: required in CI")
        pytest.skip(reason)
    return path


def wait_for(check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.02) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def query(database_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    """Run one statement synchronously (own event loop) and return its rows."""
    import asyncio

    import asyncpg

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _wait_group_gone(pgid: int, deadline: float) -> None:
    """Until no process of group `pgid` is left: a wrapper (faketime) may exit before the
    process it started, which would then go on publishing into the next test's broker."""
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # pragma: no cover - only zombies of another owner
            return
        if time.monotonic() > deadline:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)
