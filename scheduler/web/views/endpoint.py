"""What every page and form post shares: `page` sends signed-out visitors to /login and
renders errors as a page with their status; `action` checks the role and the form's CSRF
token (403 otherwise) and flashes the errors of the handler on the way back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from scheduler.core.accounts import Role
from scheduler.web.auth import check_csrf, require
from scheduler.web.principals import principal_of
from scheduler.web.problems import HTTPProblem, problem_for
from scheduler.web.rendering import error_page, flash, link, redirect

Page = Callable[[Request], Awaitable[Response]]


def _problem_page(request: Request, exc: Exception) -> Response:
    found = problem_for(exc)
    return error_page(request, found.status, found.message)


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
                return _problem_page(request, exc)

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
                return _problem_page(request, exc)
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
    """A field of the form `action` read, stripped; a NUL character is a 400."""
    value = request.scope["scheduler.form"].get(name)
    text = value if isinstance(value, str) else ""
    if "\x00" in text:
        raise HTTPProblem(400, f"{name} holds a NUL character")
    return text.strip()
