"""The dashboard's credentials in-process (httpx's ASGI transport) on a real database: Basic
auth, session sign-in, rate limit and CSRF, what a viewer sees, loopback-only without
accounts, the CLI's users and tokens, and the dashboard mounted in another application."""

from __future__ import annotations

import re
from typing import Any

import httpx
from click.testing import CliRunner

from scheduler import api
from scheduler.cli import main
from scheduler.web import create_app
from scheduler.web.bridge import call
from tests.support.procs import query
from tests.support.web import PASSWORD, Web, basic


async def test_basic_auth_session_sign_in_rate_limit_and_csrf(web: Web) -> None:
    ok = await web.client.get("/api/v1/schedules", headers=basic("viewer", PASSWORD))
    assert ok.status_code == 200
    assert (
        await web.client.get("/api/v1/schedules", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    assert (await web.client.get("/")).status_code == 303  # signed out: to /login

    form = await web.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = await web.client.post(
        "/login",
        data={"name": "operator", "password": PASSWORD, "csrf": csrf.group(1), "next": "/runs"},
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/runs"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    page = await web.client.get("/schedules/nightly")
    assert page.status_code == 200
    assert "Run now" in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    refused = await web.client.post("/schedules/nightly/trigger", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert (await web.client.post("/api/v1/schedules/nightly/trigger", json={})).status_code == 403
    done = await web.client.post("/schedules/nightly/trigger", data={"csrf": token.group(1)})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/runs/")
    assert (
        await web.client.post(
            "/schedules/nightly/delete", data={"csrf": token.group(1), "confirm": "nightly"}
        )
    ).status_code == 403

    web.client.cookies.clear()
    for _ in range(5):
        wrong = await web.client.get("/api/v1/runs", headers=basic("admin", "wrong password"))
        assert wrong.status_code == 401
    limited = await web.client.get("/api/v1/runs", headers=basic("admin", PASSWORD))
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers


async def test_viewer_sees_no_action_buttons(web: Web) -> None:
    page = await web.client.get("/schedules/nightly", headers=basic("viewer", PASSWORD))
    assert page.status_code == 200
    assert "Run now" not in page.text
    assert "/trigger" not in page.text
    admin = await web.client.get("/schedules/nightly", headers=basic("admin", PASSWORD))
    assert "Run now" in admin.text
    assert "Delete" in admin.text


async def test_without_accounts_loopback_only(database_url: str) -> None:
    app = create_app(secret_key="k")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as local:
        response = await local.get("/api/v1/schedules")
        assert response.status_code == 200
        assert "no accounts yet" in (await local.get("/")).text
    remote = httpx.ASGITransport(app=app, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=remote, base_url="http://192.0.2.1") as outside:
        assert (await outside.get("/api/v1/schedules")).status_code == 401
    await call(api.arecord_audit("test.check", "none", None, actor="t"))


def test_cli_users_tokens_audit_and_web_refusal(database_url: str, broker_url: str) -> None:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Any:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    refused = run("web", "--host", "0.0.0.0", "--port", "1")
    assert refused.exit_code == 2
    assert "no dashboard user exists" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert (
        run(
            "web",
            "users",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            input=PASSWORD + "\n",
        ).exit_code
        == 0
    )
    duplicate = run(
        "web", "users", "add", "alice", "--role", "admin", "--password-stdin", input=PASSWORD + "\n"
    )
    assert duplicate.exit_code == 2
    assert "exists" in duplicate.output
    short = run(
        "web", "users", "add", "bob", "--role", "viewer", "--password-stdin", input="short\n"
    )
    assert short.exit_code == 2
    assert "at least 8" in short.output
    listed = run("web", "users", "list", "--json")
    assert '"alice"' in listed.output
    assert "password" not in listed.output
    created = run("web", "tokens", "create", "ci", "--role", "operator")
    token = created.stdout.strip()
    assert token.startswith("sch_")
    stored = query(database_url, "SELECT token_hash FROM web_tokens")
    assert stored
    assert token not in stored[0]["token_hash"]
    assert (
        run("schedules", "add", "cli-made", "--task", "demo.noop", "--cron", "@daily").exit_code
        == 0
    )
    assert run("schedules", "remove", "cli-made", "--yes").exit_code == 0
    assert run("web", "users", "remove", "alice").exit_code == 0
    assert run("web", "users", "remove", "alice").exit_code == 2
    audit = run("audit", "--since", "1h", "--json")
    assert audit.exit_code == 0
    actions = [line for line in audit.output.splitlines() if '"action"' in line]
    for action in (
        "user.create",
        "token.create",
        "schedule.create",
        "schedule.delete",
        "user.delete",
    ):
        assert any(action in line for line in actions), action
    text = run("audit")
    assert "schedule.create" in text.output
    assert run("audit", "--since", "soon").exit_code == 2
    actor = api.default_actor()
    assert all(e["actor"] == actor for e in api.audit_log())


async def test_mounted_in_another_asgi_application(web: Web) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    host = Starlette(routes=[Mount("/scheduler", app=create_app(secret_key="k"))])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        signed_out = await client.get("/scheduler/runs")
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/scheduler/login?next=%2Fscheduler%2Fruns"
        form = await client.get("/scheduler/login?next=%2Fscheduler%2Fruns")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        done = await client.post(
            "/scheduler/login",
            data={"name": "viewer", "password": PASSWORD, "csrf": csrf.group(1),
                  "next": "/scheduler/runs"},
        )  # fmt: skip
        assert done.headers["location"] == "/scheduler/runs"
        page = await client.get("/scheduler/schedules")
        assert page.status_code == 200
        assert 'href="/scheduler/schedules/nightly"' in page.text
        assert 'src="/scheduler/static/app.js"' in page.text
        assert (await client.get("/scheduler/static/app.js")).status_code == 200
        listed = await client.get("/scheduler/api/v1/schedules", headers=web.auth("viewer"))
        assert listed.json()["total"] == 1
