"""The URL map of the pages and their forms."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from scheduler.web.views import reports, runs, schedules, signin


def routes() -> list[BaseRoute]:
    return [
        Route("/", reports.overview),
        Route("/login", signin.login_form, methods=["GET"]),
        Route("/login", signin.login, methods=["POST"]),
        Route("/logout", signin.logout, methods=["POST"]),
        Route("/schedules", schedules.schedules),
        Route("/schedules/new", schedules.edit_form, methods=["GET"]),
        Route("/schedules/new", schedules.save_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/edit", schedules.edit_form, methods=["GET"]),
        Route("/schedules/{name:path}/edit", schedules.save_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/trigger", schedules.trigger_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/delete", schedules.delete_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/pause", schedules.pause_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/resume", schedules.resume_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/backfill", schedules.backfill_schedule, methods=["POST"]),
        Route("/schedules/{name:path}", schedules.schedule_detail),
        Route("/runs", runs.runs),
        Route("/runs/bulk", runs.bulk_runs, methods=["POST"]),
        Route("/runs/{id}", runs.run_detail),
        Route("/tasks", reports.tasks),
        Route("/failures", reports.failures),
        Route("/audit", reports.audit),
    ]
