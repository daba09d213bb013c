"""The dashboard's `/metrics`: the process's own collectors and the database's series (the
outbox, `monitored` schedules), in Prometheus text a parser reads."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.web import create_app
from tests.support.sqlhelp import sql


async def test_web_metrics_serve_the_database_series(engine: AsyncEngine, broker_url: str) -> None:
    await sql(
        engine,
        "INSERT INTO schedules (name, task, cron, monitored, next_run_at)"
        " VALUES ('watched', 'demo.noop', '0 3 * * *', true, '2030-01-01T03:00:00Z'),"
        " ('unwatched', 'demo.noop', '0 4 * * *', false, '2030-01-01T04:00:00Z')",
    )
    await sql(
        engine,
        "INSERT INTO executions (id, task, args, kwargs, status_id, trigger)"
        " VALUES (gen_random_uuid(), 'demo.noop', '[]', '{}',"
        " (SELECT id FROM execution_statuses WHERE code = 'pending'), 'direct')",
    )
    app = create_app(secret_key="k")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("scheduler_outbox_pending", ())] == 1
    next_run = ("scheduler_schedule_next_run_timestamp_seconds", (("schedule", "watched"),))
    assert samples[next_run] == 1893466800.0
    assert not any(dict(labels).get("schedule") == "unwatched" for _, labels in samples)
