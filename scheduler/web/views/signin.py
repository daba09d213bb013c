"""Signing in and out with the form (a session cookie; HTTP Basic and tokens are for the
API). A wrong password counts against the sign-in limit; `next` only leads back inside."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from scheduler import api
from scheduler.web.auth import check_csrf
from scheduler.web.bridge import call
from scheduler.web.params import text_param
from scheduler.web.principals import check_password
from scheduler.web.problems import HTTPProblem
from scheduler.web.rendering import error_page, redirect, render


async def login_form(request: Request) -> Response:
    home = request.scope.get("root_path", "") + "/"
    return render(request, "login.html", next=text_param(request, "next") or home, error=None)


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
        await check_password(request, name, password)
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
        return error_page(request, 403, exc.message)
    request.session.clear()
    return redirect(request, "/login")
