"""The installed CLI as a real process: apply -> export is byte-identical to a second export,
help text renders, and a user error is one line on stderr with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def scheduler(*args: str, database_url: str, broker_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": broker_url}
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_apply_export_and_errors_in_real_processes(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "schedules.yaml"
    spec.write_text(
        "schedules:\n"
        "  - name: report\n    task: demo.noop\n    cron: 0 6 * * mon-fri\n"
        "    timezone: Asia/Tokyo\n    overlap_policy: skip\n"
        "  - name: tick\n    task: demo.noop\n    every: 90s\n    args: [1, two]\n"
    )
    applied = scheduler(
        "apply", str(spec), "--json", database_url=database_url, broker_url=broker_url
    )
    assert applied.returncode == 0, applied.stderr
    assert sorted(json.loads(applied.stdout)["create"]) == ["report", "tick"]

    exported = scheduler("export", database_url=database_url, broker_url=broker_url)
    assert exported.returncode == 0, exported.stderr
    assert "interval_seconds: 90" in exported.stdout
    assert "next_run_at" not in exported.stdout
    again = tmp_path / "exported.yaml"
    again.write_text(exported.stdout)
    reapplied = scheduler(
        "apply", str(again), "--json", database_url=database_url, broker_url=broker_url
    )
    assert reapplied.returncode == 0, reapplied.stderr
    plan = json.loads(reapplied.stdout)
    assert plan["create"] == plan["update"] == []
    assert sorted(plan["unchanged"]) == ["report", "tick"]

    bad = scheduler(
        "schedules", "add", "x", "--task", "demo.noop", "--cron", "0 6 * * *", "--tz", "Mars/Base",
        database_url=database_url, broker_url=broker_url,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "unknown time zone 'Mars/Base'" in bad.stderr
    assert "Traceback" not in bad.stderr
