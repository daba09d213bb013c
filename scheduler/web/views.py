"""The HTML pages and their forms. Reads and writes go through `scheduler.api`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.core.definitions import from_row, parse_json, to_mapping
from scheduler.core.domain import ExecutionStatus
from scheduler.web import charts, pages
from scheduler.web.app import (
    call,
    client_host,
    flash,
    instant_param,
    int_param,
    principal_of,
    problem_for,
    redirect,
    render,
    since_param,
    state_of,
)
from scheduler.web.auth import HTTPProblem, check_csrf, require
from scheduler.web.jsonapi import definition_from

Page = Callable[[Request], Awaitable[Response]]
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
TRIGGERS = ("schedule", "catchup", "manual", "direct", "backfill", "retry")


def link(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(clean) if clean else "")


def name_path(name: str) -> str:
    return "/schedules/" + quote(name, safe="")


def page(role: Role = Role.VIEWER) -> Callable[[Page], Page]:
    """A page: signed-out visitors go to /login; errors render as a page with their status."""

    def wrap(handler: Page) -> Page:
        async def endpoint(request: Request) -> Response:
            try:
                principal = await principal_of(request)
                if principal is None:
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return redirect(request, link("/login", next=target))
                require(principal, role)
                return await handler(request)
            except Exception as exc:
                found = problem_for(exc)
                return render(
                    request, "error.html", status=found.status, message=found.message,
                    code=found.status,
                )  # fmt: skip

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


def action(role: Role, back: Callable[[Request], str]) -> Callable[[Page], Page]:
    """A form post: role and CSRF checked (403 otherwise), errors flashed on the way `back`."""

    def wrap(handler: Page) -> Page:
        async def endpoint(request: Request) -> Response:
            try:
                principal = require(await principal_of(request), role)
                form = await request.form()
                csrf = form.get("csrf")
                check_csrf(request, csrf if isinstance(csrf, str) else None)
                request.scope["scheduler.actor"] = principal.name
                request.scope["scheduler.form"] = form
            except Exception as exc:
                found = problem_for(exc)
                return render(
                    request, "error.html", status=found.status, message=found.message,
                    code=found.status,
                )  # fmt: skip
            try:
                return await handler(request)
            except Exception as exc:
                found = problem_for(exc)
                flash(request, found.message, error=True)
                return redirect(request, back(request))

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


def field(request: Request, name: str) -> str:
    value = request.scope["scheduler.form"].get(name)
    text = value if isinstance(value, str) else ""
    if "\x00" in text:
        raise HTTPProblem(400, f"{name} holds a NUL character")
    return text.strip()


def actor(request: Request) -> str:
    return str(request.scope["scheduler.actor"])


def query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if not value:
        return None
    if "\x00" in value or len(value) > 1000:
        raise HTTPProblem(400, f"{name} holds a NUL character or is too long")
    return value


# --- Sign-in ----------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    home = request.scope.get("root_path", "") + "/"
    return render(request, "login.html", next=query(request, "next") or home, error=None)


async def login(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("name") or "")[:200]
    password = str(form.get("password") or "")
    home = request.scope.get("root_path", "") + "/"
    target = str(form.get("next") or home)
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = home
    try:
        check_csrf(request, str(form.get("csrf") or ""))
        limiter = state_of(request).limiter
        limiter.check(client_host(request), name)
        role = await call(api.aauthenticate_password(name, password))
        if role is None:
            limiter.failed(client_host(request), name)
            raise HTTPProblem(401, "wrong user name or password")
    except HTTPProblem as exc:
        return render(request, "login.html", status=exc.status, next=target, error=exc.message)
    request.session.clear()
    request.session["user"] = name
    await call(api.arecord_audit("session.sign_in", "user", name, actor=name))
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    try:
        check_csrf(request, str(form.get("csrf") or ""))
    except HTTPProblem as exc:
        return render(request, "error.html", status=403, message=exc.message, code=403)
    request.session.clear()
    return redirect(request, "/login")


# --- Overview ---------------------------------------------------------------------------


@page()
async def overview(request: Request) -> Response:
    data = await call(api.aoverview())
    chart = charts.runs_per_hour(data["runs_per_hour"], now=data["now"])
    totals: dict[str, int] = {}
    for row in data["runs_per_hour"]:
        totals[row["status"]] = totals.get(row["status"], 0) + row["runs"]
    return render(request, "overview.html", live=True, data=data, chart=chart, totals=totals)


# --- Schedules --------------------------------------------------------------------------


@page()
async def schedules(request: Request) -> Response:
    search = query(request, "q")
    state = query(request, "state")
    after = query(request, "after")
    limit = int_param(query(request, "limit"), "limit", 50, 1, 200)
    data = await call(api.aschedules_page(search=search, state=state, after=after, limit=limit))
    next_link = (
        link("/schedules", q=search, state=state, after=data["next"], limit=limit)
        if data["next"] else None
    )  # fmt: skip
    return render(
        request, "schedules.html", data=data, q=search or "", state=state or "",
        next_link=next_link, first_link=link("/schedules", q=search, state=state) if after else None,
        name_path=name_path,
    )  # fmt: skip


@page()
async def schedule_detail(request: Request) -> Response:
    name = request.path_params["name"]
    row = await call(api.aschedule(name))
    runs = await call(api.aruns_page(schedule=name, limit=200, count=False))
    now = datetime.now(UTC)
    return render(
        request, "schedule.html", s=row, upcoming=pages.upcoming(row, 10, now),
        runs=runs["runs"][:20], chart=charts.history(runs["runs"]), name_path=name_path,
        definition=pages.pretty_json(to_mapping(from_row(row))),
        audit=await call(api.aaudit_log(target_type="schedule", target=name, limit=10)),
    )  # fmt: skip


def _back_to_schedule(request: Request) -> str:
    return name_path(request.path_params.get("name", ""))


@action(Role.OPERATOR, _back_to_schedule)
async def trigger_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    result = await call(
        api.atrigger(name, force=field(request, "overlap") == "force", actor=actor(request))
    )
    message = f"run {result.execution_id} {result.status.value}"
    flash(request, message + (f": {result.reason}" if result.reason else ""))
    return redirect(request, f"/runs/{result.execution_id}")


@action(Role.OPERATOR, _back_to_schedule)
async def pause_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    await call(api.apause_schedule(name, field(request, "reason")[:2000], actor=actor(request)))
    flash(request, f"schedule {name} paused")
    return redirect(request, name_path(name))


@action(Role.OPERATOR, _back_to_schedule)
async def resume_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    await call(api.aresume_schedule(name, actor=actor(request)))
    flash(request, f"schedule {name} resumed")
    return redirect(request, name_path(name))


@action(Role.OPERATOR, _back_to_schedule)
async def backfill_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    report = await call(
        api.abackfill(
            name, instant_param(field(request, "from"), "from"),
            instant_param(field(request, "to"), "to"), force=field(request, "force") == "on",
            actor=actor(request),
        )
    )  # fmt: skip
    flash(
        request,
        f"backfill of {name}: {len(report.created)} runs created, {len(report.existing)} slots "
        f"had a run already, {len(report.skipped)} refused by the overlap policy",
    )
    return redirect(request, link("/runs", schedule=name, trigger="backfill"))


@page(Role.ADMIN)
async def edit_form(request: Request) -> Response:
    name = request.path_params.get("name")
    text = '{\n  "name": "",\n  "task": "demo.noop",\n  "cron": "0 3 * * *"\n}'
    if name is not None:
        text = pages.pretty_json(to_mapping(from_row(await call(api.aschedule(name)))))
    return render(request, "edit.html", name=name, text=text, name_path=name_path)


def _back_to_form(request: Request) -> str:
    name = request.path_params.get("name")
    return name_path(name) + "/edit" if name else "/schedules/new"


@action(Role.ADMIN, _back_to_form)
async def save_schedule(request: Request) -> Response:
    name = request.path_params.get("name")
    data = parse_json(field(request, "definition"), "the definition")
    if not isinstance(data, dict):
        raise HTTPProblem(400, "the definition must be a JSON object")
    if name is not None:
        data["name"] = name
        await call(api.aschedule(name))
    else:
        existing = str(data.get("name", ""))
        if existing and await _exists(existing):
            raise HTTPProblem(409, f"a schedule named {existing!r} exists: edit it instead")
    definition = definition_from(data)
    outcome = await call(api.aupsert_schedule(definition, actor=actor(request)))
    flash(request, f"schedule {definition.name} {outcome.value}")
    return redirect(request, name_path(definition.name))


async def _exists(name: str) -> bool:
    try:
        await call(api.aschedule(name))
    except Exception:
        return False
    return True


@action(Role.ADMIN, _back_to_schedule)
async def delete_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    if field(request, "confirm") != name:
        raise HTTPProblem(400, "type the schedule's name to confirm the deletion")
    await call(api.aremove_schedule(name, actor=actor(request)))
    flash(request, f"schedule {name} deleted")
    return redirect(request, "/schedules")


# --- Runs -------------------------------------------------------------------------------

RUN_FILTERS = ("schedule", "task", "status", "trigger", "worker", "since", "until")


@page()
async def runs(request: Request) -> Response:
    filters = {k: query(request, k) for k in RUN_FILTERS}
    cursor = query(request, "cursor")
    since = instant_param(filters["since"], "since") if filters["since"] else None
    until = instant_param(filters["until"], "until") if filters["until"] else None
    data = await call(
        api.aruns_page(
            schedule=filters["schedule"], task=filters["task"], status=filters["status"],
            trigger=filters["trigger"], worker=filters["worker"], since=since, until=until,
            cursor=cursor, limit=50,
        )
    )  # fmt: skip
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
        done = await call(api.arevoke_runs(ids, actor=actor(request)))
        flash(request, f"{len(done)} of {len(ids)} runs revoked (the others had finished)")
    elif which == "retry":
        made = await call(api.aretry_runs(ids, actor=actor(request)))
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


# --- Tasks, failures, audit -------------------------------------------------------------


@page()
async def tasks(request: Request) -> Response:
    window = query(request, "window") or "24h"
    if window not in WINDOWS:
        raise HTTPProblem(400, "window must be 1h, 24h or 7d")
    rows = await call(api.atask_stats(since=datetime.now(UTC) - WINDOWS[window]))
    return render(request, "tasks.html", rows=rows, window=window, windows=WINDOWS)


@page()
async def failures(request: Request) -> Response:
    window = query(request, "window") or "24h"
    if window not in WINDOWS:
        raise HTTPProblem(400, "window must be 1h, 24h or 7d")
    since = datetime.now(UTC) - WINDOWS[window]
    rows = await call(api.afailures(since=since))
    for row in rows:
        row["link"] = link("/runs", task=row["task"], status=row["status"], since=since.isoformat())
    return render(request, "failures.html", rows=rows, window=window, windows=WINDOWS)


@page()
async def audit(request: Request) -> Response:
    before = int_param(query(request, "before"), "before", 0, 0, 2**62) or None
    since = since_param(query(request, "since"), timedelta(days=3650))
    entries = await call(api.aaudit_log(since=since, before_id=before, limit=100))
    next_link = link("/audit", before=entries[-1]["id"]) if len(entries) == 100 else None
    return render(request, "audit.html", entries=entries, next_link=next_link, name_path=name_path)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/schedules", schedules),
        Route("/schedules/new", edit_form, methods=["GET"]),
        Route("/schedules/new", save_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/edit", edit_form, methods=["GET"]),
        Route("/schedules/{name:path}/edit", save_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/trigger", trigger_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/delete", delete_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/pause", pause_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/resume", resume_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/backfill", backfill_schedule, methods=["POST"]),
        Route("/schedules/{name:path}", schedule_detail),
        Route("/runs", runs),
        Route("/runs/bulk", bulk_runs, methods=["POST"]),
        Route("/runs/{id}", run_detail),
        Route("/tasks", tasks),
        Route("/failures", failures),
        Route("/audit", audit),
    ]
