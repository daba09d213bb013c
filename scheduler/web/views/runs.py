"""The runs pages: the filtered list (live), retry or revoke a selection, and one run with
its timeline, progress and tree of child runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.core.domain import ExecutionStatus
from scheduler.web import charts
from scheduler.web.bridge import call
from scheduler.web.params import run_filter_args, run_filter_texts, text_param
from scheduler.web.principals import actor_of
from scheduler.web.problems import HTTPProblem
from scheduler.web.rendering import flash, link, name_path, redirect, render
from scheduler.web.views.endpoint import action, field, page

TRIGGERS = ("schedule", "catchup", "manual", "direct", "backfill", "retry")


@page()
async def runs(request: Request) -> Response:
    filters = run_filter_texts(request)
    cursor = text_param(request, "cursor")
    data = await call(api.aruns_page(**run_filter_args(filters), cursor=cursor, limit=50))
    choices = await call(api.afilter_choices())
    return render(
        request, "runs.html", live=True, data=data, filters={k: v or "" for k, v in filters.items()},
        statuses=[s.value for s in ExecutionStatus], triggers=TRIGGERS, choices=choices,
        next_link=link("/runs", **filters, cursor=data["next"]) if data["next"] else None,
        first_link=link("/runs", **filters) if cursor else None, name_path=name_path,
    )  # fmt: skip


@action(Role.OPERATOR, lambda request: "/runs")
async def bulk_runs(request: Request) -> Response:
    form = request.scope["scheduler.form"]
    ids = []
    for value in form.getlist("ids")[:500]:
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            raise HTTPProblem(400, f"{value!r} is not an execution id") from None
    if not ids:
        raise HTTPProblem(400, "select at least one run")
    which = field(request, "action")
    if which == "revoke":
        done = await call(api.arevoke_runs(ids, actor=actor_of(request)))
        flash(request, f"{len(done)} of {len(ids)} runs revoked (the others had finished)")
    elif which == "retry":
        made = await call(api.aretry_runs(ids, actor=actor_of(request)))
        flash(
            request,
            f"{len(made)} of {len(ids)} runs retried as new runs (only failed, timed-out, lost and revoked runs of a schedule are)",
        )
    else:
        raise HTTPProblem(400, "choose retry or revoke")
    return redirect(request, "/runs")


@page()
async def run_detail(request: Request) -> Response:
    run = await call(api.arun(request.path_params["id"]))
    progress = run.get("progress") or {}
    percent = progress.get("percent") if isinstance(progress, dict) else None
    tree = tree_depths(await call(api.arun_tree(run["id"])))
    return render(
        request, "run.html", live=not ExecutionStatus(run["status"]).is_terminal, run=run,
        timeline=charts.timeline(run, now=datetime.now(UTC)), percent=percent, tree=tree,
        name_path=name_path,
    )  # fmt: skip


def tree_depths(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each node with its `depth` under the root (parents first, bounded)."""
    parents = {node["id"]: node.get("parent_id") for node in tree}
    for node in tree:
        depth, current = 0, node.get("parent_id")
        while current in parents and depth < 50:
            depth += 1
            current = parents[current]
        node["depth"] = depth
    return tree
