"""`/api/v1/runs`: the runs list (the page's filters, keyset paging), one run with its tree,
and retry or revoke one run."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.web.bridge import call
from scheduler.web.jsonapi.endpoint import api_route, ok
from scheduler.web.params import int_param, run_filter_args, run_filter_texts, text_param
from scheduler.web.principals import actor_of
from scheduler.web.problems import HTTPProblem


@api_route(Role.VIEWER)
async def list_runs(request: Request) -> Response:
    data = await call(
        api.aruns_page(
            **run_filter_args(run_filter_texts(request)),
            cursor=text_param(request, "cursor"),
            limit=int_param(request.query_params.get("limit"), "limit", 50, 1, 500),
        )
    )
    return ok(data)


@api_route(Role.VIEWER)
async def get_run(request: Request) -> Response:
    run = await call(api.arun(request.path_params["id"]))
    return ok({**run, "tree": await call(api.arun_tree(run["id"]))})


def _run_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["id"])
    except ValueError:
        raise HTTPProblem(404, f"{request.path_params['id']!r} is not an execution id") from None


@api_route(Role.OPERATOR, writes=True)
async def retry_run(request: Request) -> Response:
    key = _run_id(request)
    result = await call(api.aretry_run(key, actor=actor_of(request)))
    return ok(
        {"execution_id": result.execution_id, "status": result.status.value, "retry_of": key}, 201
    )


@api_route(Role.OPERATOR, writes=True)
async def revoke_run(request: Request) -> Response:
    key = _run_id(request)
    await call(api.arun(key))
    done = await call(api.arevoke_runs([key], actor=actor_of(request)))
    if not done:
        raise HTTPProblem(409, "the run has finished: nothing to revoke")
    return ok({"revoked": key})
