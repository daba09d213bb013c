"""Importing any module of the project starts no server and opens no connection: without
DATABASE_URL and BROKER_URL, the embedded services start only when a command needs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import importlib, pkgutil, socket, sys
opened = []
real_connect = socket.socket.connect
def connect(self, address):
    opened.append(address)
    return real_connect(self, address)
socket.socket.connect = connect
import scheduler, config, tasks
names = []
for package in (scheduler, config, tasks):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
for name in names:
    importlib.import_module(name)
from config.celery import app
print(len(names), "modules;", "connections:", opened)
"""


def test_importing_every_module_starts_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    env["SCHEDULER_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, _, connections = done.stdout.strip().partition(" modules; connections: ")
    assert int(count) > 50
    assert connections == "[]"
    assert not (tmp_path / "state").exists()  # no embedded server was set up
