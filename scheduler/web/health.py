"""The probes and `/metrics`: `/livez` (the process answers), `/readyz` (the database
answers within 5 s) and the Prometheus exposition with the database's series."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from config.settings import get_settings
from scheduler import api
from scheduler.observability import database_series
from scheduler.observability import metrics as project_metrics
from scheduler.runtime.db import get_runtime
from scheduler.web.bridge import call
from scheduler.web.problems import problem_for


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await asyncio.wait_for(call(api.ahas_accounts()), timeout=5)
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "error": problem_for(exc).message}, 503)
    return JSONResponse({"status": "ready"})


_metrics_refreshed_at = -float("inf")


async def _refresh_database_metrics() -> None:
    async with get_runtime().session() as session:
        await database_series.database_metrics().refresh(session)


async def metrics(request: Request) -> Response:
    """This process's metrics and the database's series (the outbox, `monitored` schedules),
    read again at most every `SCHEDULER_METRICS_REFRESH_S` (or ten times a refresh's cost)."""
    global _metrics_refreshed_at
    source = database_series.database_metrics()
    every_s = max(get_settings().metrics_refresh_s, 10 * source.refresh_s)
    if time.monotonic() - _metrics_refreshed_at >= every_s:
        _metrics_refreshed_at = time.monotonic()
        await call(_refresh_database_metrics())
    body = project_metrics.exposition(with_database=True)
    return Response(body, media_type=project_metrics.CONTENT_TYPE)


def routes() -> list[BaseRoute]:
    return [Route("/livez", livez), Route("/readyz", readyz), Route("/metrics", metrics)]
