"""The URL map of `/api/v1` (mounted there by `scheduler.web.app`)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from scheduler.web.jsonapi import reports, runs, schedules
from scheduler.web.jsonapi.openapi import openapi


def routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi),
        Route("/schedules", schedules.list_schedules, methods=["GET"]),
        Route("/schedules", schedules.create_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/trigger", schedules.trigger_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/pause", schedules.pause_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/resume", schedules.resume_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/backfill", schedules.backfill_schedule, methods=["POST"]),
        Route("/schedules/{name:path}", schedules.get_schedule, methods=["GET"]),
        Route("/schedules/{name:path}", schedules.patch_schedule, methods=["PATCH"]),
        Route("/schedules/{name:path}", schedules.delete_schedule, methods=["DELETE"]),
        Route("/runs", runs.list_runs, methods=["GET"]),
        Route("/runs/{id}/retry", runs.retry_run, methods=["POST"]),
        Route("/runs/{id}/revoke", runs.revoke_run, methods=["POST"]),
        Route("/runs/{id}", runs.get_run, methods=["GET"]),
        Route("/stats", reports.stats, methods=["GET"]),
        Route("/audit", reports.audit, methods=["GET"]),
    ]
