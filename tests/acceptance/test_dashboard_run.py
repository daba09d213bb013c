"""`scheduler run` starts the dashboard on loopback and prints its URL first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.procs import ROOT, free_port, http_ok, stop_group, wait_for


def test_scheduler_run_prints_the_dashboard_url_first_and_serves_it(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler.cli",
                "run",
                "--web-port",
                str(port),
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_ok(url + "readyz"), timeout_s=60, interval_s=0.2)
        first = log.read_text().splitlines()[0]
        assert first == f"dashboard: {url}"
        overview = httpx.get(url, timeout=5)
        assert overview.status_code == 200
        assert "demo-noop-every-5s" in httpx.get(url + "schedules", timeout=5).text
        assert "loopback only" in overview.text
    finally:
        stop_group(proc, timeout_s=30)
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
