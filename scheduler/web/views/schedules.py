"""The schedules pages: the list, one schedule (its next fire times, runs, history chart and
audit), the edit form, and the forms that trigger, pause, resume, backfill, save or delete."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.core.definitions import from_row, parse_json, to_mapping
from scheduler.web import charts, pages
from scheduler.web.bridge import call
from scheduler.web.definitions import definition_from, refuse_existing
from scheduler.web.params import instant_param, int_param, text_param
from scheduler.web.principals import actor_of
from scheduler.web.problems import HTTPProblem
from scheduler.web.rendering import flash, link, name_path, redirect, render
from scheduler.web.views.endpoint import action, field, page


@page()
async def schedules(request: Request) -> Response:
    search = text_param(request, "q")
    state = text_param(request, "state")
    after = text_param(request, "after")
    limit = int_param(text_param(request, "limit"), "limit", 50, 1, 200)
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
        api.atrigger(name, force=field(request, "overlap") == "force", actor=actor_of(request))
    )
    message = f"run {result.execution_id} {result.status.value}"
    flash(request, message + (f": {result.reason}" if result.reason else ""))
    return redirect(request, f"/runs/{result.execution_id}")


@action(Role.OPERATOR, _back_to_schedule)
async def pause_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    await call(api.apause_schedule(name, field(request, "reason")[:2000], actor=actor_of(request)))
    flash(request, f"schedule {name} paused")
    return redirect(request, name_path(name))


@action(Role.OPERATOR, _back_to_schedule)
async def resume_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    await call(api.aresume_schedule(name, actor=actor_of(request)))
    flash(request, f"schedule {name} resumed")
    return redirect(request, name_path(name))


@action(Role.OPERATOR, _back_to_schedule)
async def backfill_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    report = await call(
        api.abackfill(
            name, instant_param(field(request, "from"), "from"),
            instant_param(field(request, "to"), "to"), force=field(request, "force") == "on",
            actor=actor_of(request),
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
    elif existing := str(data.get("name", "")):
        await refuse_existing(existing, "edit it instead")
    definition = definition_from(data)
    outcome = await call(api.aupsert_schedule(definition, actor=actor_of(request)))
    flash(request, f"schedule {definition.name} {outcome.value}")
    return redirect(request, name_path(definition.name))


@action(Role.ADMIN, _back_to_schedule)
async def delete_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    if field(request, "confirm") != name:
        raise HTTPProblem(400, "type the schedule's name to confirm the deletion")
    await call(api.aremove_schedule(name, actor=actor_of(request)))
    flash(request, f"schedule {name} deleted")
    return redirect(request, "/schedules")
