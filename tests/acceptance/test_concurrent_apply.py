"""Two `scheduler apply --prune` processes at once, with disjoint files: the end state is
always exactly one file's content (the second waits for the first's transaction)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT, query


def plan(path: Path, prefix: str, count: int) -> set[str]:
    names = {f"{prefix}-{i:03d}" for i in range(count)}
    body = "".join(f"  - {{name: {n}, task: demo.noop, every: 5m}}\n" for n in sorted(names))
    path.write_text("schedules:\n" + body)
    return names


def test_concurrent_prune_applies_leave_exactly_one_file(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    left = plan(tmp_path / "a.yaml", "a", 100)
    right = plan(tmp_path / "b.yaml", "b", 100)
    for _ in range(2):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "apply", str(tmp_path / f), "--prune"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f in ("a.yaml", "b.yaml")
        ]
        outputs = [p.communicate(timeout=90) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        names = {r["name"] for r in query(database_url, "SELECT name FROM schedules")}
        assert names in (left, right), f"{len(names)} schedules: a mix or nothing"
