"""How figures are printed (rich tables), the machine they were measured on, and the results
file (benchmarks/results/latest.json)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.env import ROOT, Env, console, run, sql

RESULTS = ROOT / "benchmarks" / "results"


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


def machine_info(env: Env) -> dict[str, Any]:
    import celery
    import kombu
    import redis
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


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {RESULTS / 'latest.json'}")
