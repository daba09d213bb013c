"""The dashboard as an ASGI application (Starlette): the pages, `/api/v1`, the static
files, the probes and `/metrics`, behind the security headers and the session cookie.

Every handler goes through `scheduler.api` (no SQL here), awaited on the process's runtime
loop (`scheduler.web.bridge`), so the dashboard can be mounted in any ASGI application
without a second engine::

    from scheduler.web import create_app
    app.mount("/scheduler", create_app())
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from config.settings import get_settings
from scheduler.web import health
from scheduler.web.jsonapi.routes import routes as api_routes
from scheduler.web.principals import State
from scheduler.web.rendering import templates
from scheduler.web.views.routes import routes as page_routes

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response, and `Server-Timing`
    (the time to the response's start, for benchmarks and the browser's dev tools)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.encode() not in present
                ]
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(*, open_without_accounts: bool = True, secret_key: str | None = None) -> Starlette:
    """The dashboard as an ASGI application.

    `open_without_accounts`: while no web user or token exists, requests from loopback are
    served as the local admin (`scheduler web` on 127.0.0.1 does this); once an account
    exists every request needs credentials. `secret_key` signs the session cookie (default:
    `SCHEDULER_WEB_SECRET`, else a random key per process: sessions end on restart)."""
    key = secret_key or get_settings().web_secret or secrets.token_urlsafe(32)
    routes: list[BaseRoute] = [
        *page_routes(),
        Mount("/api/v1", routes=api_routes()),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        *health.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie="scheduler_session",
                same_site="strict",
                https_only=False,
                max_age=12 * 3600,
            ),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.scheduler = State(open_without_accounts=open_without_accounts)
    app.state.templates = templates()
    return app


async def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith(("/api/", request.scope.get("root_path", "") + "/api/")):
        return JSONResponse({"error": "no such endpoint: see /api/v1/openapi.json"}, 404)
    return PlainTextResponse("not found", 404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"method {request.method} is not allowed here"}, 405)
