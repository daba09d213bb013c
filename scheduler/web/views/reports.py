"""The overview (live), the per task and failures pages over a window, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from scheduler import api
from scheduler.web import charts
from scheduler.web.bridge import call
from scheduler.web.params import int_param, since_param, text_param
from scheduler.web.problems import HTTPProblem
from scheduler.web.rendering import link, name_path, render
from scheduler.web.views.endpoint import page

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


def _window(request: Request) -> tuple[str, datetime]:
    """The `window` asked for (default 24h) and the instant it starts at."""
    window = text_param(request, "window") or "24h"
    if window not in WINDOWS:
        raise HTTPProblem(400, "window must be 1h, 24h or 7d")
    return window, datetime.now(UTC) - WINDOWS[window]


@page()
async def overview(request: Request) -> Response:
    data = await call(api.aoverview())
    chart = charts.runs_per_hour(data["runs_per_hour"], now=data["now"])
    totals: dict[str, int] = {}
    for row in data["runs_per_hour"]:
        totals[row["status"]] = totals.get(row["status"], 0) + row["runs"]
    return render(request, "overview.html", live=True, data=data, chart=chart, totals=totals)


@page()
async def tasks(request: Request) -> Response:
    window, since = _window(request)
    rows = await call(api.atask_stats(since=since))
    return render(request, "tasks.html", rows=rows, window=window, windows=WINDOWS)


@page()
async def failures(request: Request) -> Response:
    window, since = _window(request)
    rows = await call(api.afailures(since=since))
    for row in rows:
        row["link"] = link("/runs", task=row["task"], status=row["status"], since=since.isoformat())
    return render(request, "failures.html", rows=rows, window=window, windows=WINDOWS)


@page()
async def audit(request: Request) -> Response:
    before = int_param(text_param(request, "before"), "before", 0, 0, 2**62) or None
    since = since_param(text_param(request, "since"), timedelta(days=3650))
    entries = await call(api.aaudit_log(since=since, before_id=before, limit=100))
    next_link = link("/audit", before=entries[-1]["id"]) if len(entries) == 100 else None
    return render(request, "audit.html", entries=entries, next_link=next_link, name_path=name_path)
