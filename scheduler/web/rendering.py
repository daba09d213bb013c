"""How a page is answered: the Jinja environment (autoescaped, strict), `render` with what
every template may use (the caller, the CSRF token, the flash message), flash messages,
redirects under the mount's root path, and the links the pages build."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from scheduler.core.accounts import Role
from scheduler.web import charts, pages
from scheduler.web.auth import Principal, csrf_token

TEMPLATES = Path(__file__).parent / "templates"


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        local=pages.local_time,
        rel=pages.relative,
        ms=pages.duration,
        pretty=pages.pretty_json,
        when=pages.describe,
        pct=pages.percent,
    )
    env.globals.update(colour=charts.colour, sparkline=charts.sparkline)
    return env


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    env: jinja2.Environment = request.app.state.templates
    principal: Principal | None = request.scope.get("scheduler.principal")
    live_poll = request.headers.get("x-live") == "1"
    flash = None if live_poll else request.session.pop("flash", None)
    html = env.get_template(template).render(
        request=request,
        me=principal,
        csrf=csrf_token(request),
        flash=flash,
        base=request.scope.get("root_path", ""),
        can_operate=bool(principal and principal.role.allows(Role.OPERATOR)),
        can_admin=bool(principal and principal.role.allows(Role.ADMIN)),
        now=datetime.now(UTC),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, message=message, code=status)


def flash(request: Request, message: str, *, error: bool = False) -> None:
    request.session["flash"] = {"message": message[:500], "error": error}


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)


def link(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(clean) if clean else "")


def name_path(name: str) -> str:
    return "/schedules/" + quote(name, safe="")
