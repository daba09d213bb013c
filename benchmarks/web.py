"""The dashboard under load: server time of the pages with 10k schedules and 1M runs (quick:
1k and 100k), page weight, and the first page fully loaded in headless Chromium.

Run with `make bench` (quick) or `make bench FULL=1`; alone: `python -m benchmarks --only web`.
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.env import Env
from benchmarks.processes import stop
from scheduler.core.domain import ExecutionStatus

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "benchmark password"
SEED_SCHEDULES = """
INSERT INTO schedules (name, task, cron, timezone, enabled, next_run_at, description)
SELECT 'bench-' || lpad(g::text, 5, '0'), 'bench.task' || (g % 20), '*/5 * * * *',
       (ARRAY['UTC', 'Europe/Paris', 'America/New_York'])[1 + g % 3], g % 10 <> 0,
       now() + (g % 300) * interval '1 second', 'schedule ' || g
FROM generate_series(1, $1) g
"""
OUTCOMES = ", ".join(
    str(s.id)
    for s in [ExecutionStatus.SUCCESS] * 7
    + [ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.LOST]
)
"""The seeded runs' statuses: 7 in 10 succeeded, then one failed, one timed out, one lost."""
SEED_RUNS = """
INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for, status_id,
                        created_at, queued_at, started_at, completed_at, duration_ms, attempt,
                        worker, error_type, error_message)
SELECT gen_random_uuid(), 1 + g % $2, 'bench.task' || ((1 + g % $2) % 20), '[]', '{}',
       (ARRAY['schedule', 'schedule', 'schedule', 'manual', 'catchup'])[1 + g % 5],
       now() - g * interval '1 second' * $3,
       (ARRAY[{outcomes}])[1 + (g / 7) % 10]::smallint,
       now() - g * interval '1 second' * $3, now() - g * interval '1 second' * $3,
       now() - g * interval '1 second' * $3, now() - g * interval '1 second' * $3 + interval '40 ms',
       20 + g % 400, 1, 'worker-' || (g % 8),
       CASE WHEN (g / 7) % 10 IN (7, 8) THEN 'RuntimeError' END,
       CASE WHEN (g / 7) % 10 IN (7, 8) THEN 'failure ' || (g % 13) END
FROM generate_series(1, $1) g
""".replace("{outcomes}", OUTCOMES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def _server_ms(response: httpx.Response) -> float:
    timing = response.headers.get("server-timing", "app;dur=0")
    return float(timing.split("dur=")[1])


def page_set(schedules: int) -> dict[str, str]:
    middle = f"bench-{schedules // 2:05d}"
    return {
        "schedules": "/schedules",
        "schedules search": "/schedules?q=bench-001",
        "schedules paused": "/schedules?state=paused",
        "schedules page 2": "/schedules?after=bench-00050",
        "schedule detail": f"/schedules/{middle}",
        "runs": "/runs",
        "runs status": "/runs?status=failed",
        "runs schedule": f"/runs?schedule={middle}",
        "runs task": "/runs?task=bench.task7",
        "runs trigger": "/runs?trigger=manual",
        "runs worker": "/runs?worker=worker-3",
        "runs since": "/runs?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z",
        "runs rare combination": "/runs?status=lost&trigger=catchup&worker=worker-5",
        "overview": "/",
        "tasks": "/tasks?window=24h",
        "failures": "/failures?window=24h",
    }


def bench_web(env: Env, schedules: int, runs: int, repeats: int) -> list[dict[str, Any]]:
    from benchmarks.env import run, sql
    from scheduler import api

    url = env.fresh_database()
    started = time.perf_counter()
    run(sql(url, SEED_SCHEDULES, schedules))
    spread_s = max(1, 7 * 86400 // runs)
    run(sql(url, SEED_RUNS, runs, schedules, spread_s))
    run(sql(url, "ANALYZE"))
    seed_s = time.perf_counter() - started
    api.add_user("bench", "admin", PASSWORD)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "web", "--port", str(port), "-l", "warning"],
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        auth = httpx.BasicAuth("bench", PASSWORD)
        with httpx.Client(base_url=base, auth=auth, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not start")
                time.sleep(0.2)
            static = sum(len(client.get(p).content) for p in ("/static/app.css", "/static/app.js"))
            for label, path in page_set(schedules).items():
                client.get(path)  # warm
                times, size = [], 0
                for _ in range(repeats):
                    response = client.get(path)
                    response.raise_for_status()
                    times.append(_server_ms(response))
                    size = len(response.content)
                rows.append({
                    "page": label, "schedules": schedules, "runs": runs,
                    "p50_ms": round(statistics.median(times), 1), "p95_ms": round(_p95(times), 1),
                    "max_ms": round(max(times), 1), "html_kb": round(size / 1024, 1),
                    "with_static_kb": round((size + static) / 1024, 1),
                })  # fmt: skip
        rows.append({"page": "(seeding)", "schedules": schedules, "runs": runs,
                     "p50_ms": round(seed_s * 1000), "p95_ms": "", "max_ms": "",
                     "html_kb": "", "with_static_kb": ""})  # fmt: skip
        rows += browser_load(base, schedules, runs)
    finally:
        stop(server)
    return rows


def browser_load(base: str, schedules: int, runs: int) -> list[dict[str, Any]]:
    """First visit of a page in a fresh headless Chromium: navigation start to load end."""
    if not CHROMIUM.exists():
        return [{"page": "(browser)", "schedules": schedules, "runs": runs,
                 "p50_ms": "chromium missing", "p95_ms": "", "max_ms": "", "html_kb": "",
                 "with_static_kb": ""}]  # fmt: skip
    from playwright.sync_api import Response, sync_playwright

    raw = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    auth_header = {"Authorization": f"Basic {raw}"}

    out = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for label, path in (("first load: schedules", "/schedules"), ("first load: runs", "/runs"),
                                ("first load: overview", "/")):  # fmt: skip
                loads, transferred = [], 0
                for _ in range(3):
                    context = browser.new_context(extra_http_headers=dict(auth_header))
                    page = context.new_page()
                    sizes: list[int] = []

                    def count(response: Response, sizes: list[int] = sizes) -> None:
                        if response.status < 300:
                            sizes.append(len(response.body()))

                    page.on("response", count)
                    page.goto(base + path, wait_until="load")
                    loads.append(
                        float(page.evaluate(
                            "() => { const n = performance.getEntriesByType('navigation')[0];"
                            " return n.loadEventEnd - n.startTime; }"
                        ))
                    )  # fmt: skip
                    transferred = sum(sizes)
                    context.close()
                out.append({"page": label, "schedules": schedules, "runs": runs,
                            "p50_ms": round(statistics.median(loads), 1),
                            "p95_ms": round(max(loads), 1), "max_ms": round(max(loads), 1),
                            "html_kb": "", "with_static_kb": round(transferred / 1024, 1)})  # fmt: skip
        finally:
            browser.close()
    return out
