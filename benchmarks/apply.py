"""`scheduler apply FILE.yaml` of many entries: seconds for `--dry-run` and for the real apply
into an empty database, each a separate CLI process (YAML load, validation, one transaction).

Run with `make bench` (10,000 entries) or `make bench FULL=1` (100,000); alone:
`python -m benchmarks --only apply`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.env import Env


def write_file(path: Path, entries: int) -> None:
    """Every entry a cron or interval schedule of demo.noop with small kwargs, names unique."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("schedules:\n")
        for i in range(entries):
            timing = f"cron: '{i % 60} * * * *'" if i % 2 else "every: 30s"
            handle.write(
                f"  - name: job-{i:06d}\n    task: demo.noop\n    {timing}\n"
                f"    kwargs: {{n: {i}}}\n"
            )


def _timed(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy())
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def bench_apply(env: Env, entries: int) -> list[dict[str, Any]]:
    env.fresh_database()
    path = Path(env.tmp) / f"apply-{entries}.yaml"
    write_file(path, entries)
    cli = [str(Path(sys.executable).parent / "scheduler"), "apply", str(path)]
    dry = _timed([*cli, "--dry-run"])
    real = _timed(cli)
    again = _timed(cli)
    return [
        {
            "entries": entries,
            "file MB": round(path.stat().st_size / 1e6, 1),
            "dry-run s": round(dry, 1),
            "apply (empty db) s": round(real, 1),
            "apply again (unchanged) s": round(again, 1),
        }
    ]
