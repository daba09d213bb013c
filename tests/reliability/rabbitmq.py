"""A private RabbitMQ node for tests that stop and start the broker.

Its own node name, AMQP and distribution ports (loopback only), database and log directories
under the test's temporary directory, no plugins: the machine's own RabbitMQ is never touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from scheduler.runtime.embedded import _open_prefixes
from tests.support.procs import free_port, stop_group

RUN_AS = "rabbitmq"
"""The Debian wrapper runs the server as this user when started by root."""


def rabbitmq_server() -> str | None:
    return shutil.which("rabbitmq-server")


class PrivateRabbitMQ:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"sched-test-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "ERL_CRASH_DUMP": str(self.root / "erl_crash.dump"),
        }

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(RUN_AS)
            _open_prefixes(self.root)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout_s: float = 120) -> None:
        self._prepare()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["rabbitmq-server"],
                env=self._env(),
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"private RabbitMQ did not start: {tail}")
            time.sleep(0.5)

    def ready(self) -> bool:
        import importlib

        connection_cls: Any = importlib.import_module("kombu").Connection
        try:
            with connection_cls(self.url, connect_timeout=1) as connection:
                connection.ensure_connection(max_retries=1)
                return True
        except Exception:
            return False

    def node_pids(self) -> list[int]:
        """The processes of this node, wherever they run: started by root, the Debian wrapper
        hands the server to `su`, which puts it in a session of its own, out of the reach
        of the wrapper's process group."""
        mark = f"RABBITMQ_NODENAME={self.node}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    environment = (entry / "environ").read_bytes()
                except OSError:  # gone meanwhile, or not ours to read
                    continue
                if mark in environment.split(b"\0"):
                    pids.append(int(entry.name))
        return pids

    def stop(self, timeout_s: float = 60) -> None:
        """Stop the node (SIGTERM to each of its process groups, SIGKILL past `timeout_s`)
        and its processes end; raises when its port answers after that."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            stop_group(proc, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        sent = signal.SIGTERM
        while pids := self.node_pids():
            if time.monotonic() > deadline:
                sent = signal.SIGKILL
            for group in {g for pid in pids if (g := _group(pid)) is not None}:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sent)
            time.sleep(0.2)
        if self.ready():
            raise RuntimeError(f"private RabbitMQ {self.node} still answers after its stop")


def _group(pid: int) -> int | None:
    """The process group of `pid`; None once it is gone."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
