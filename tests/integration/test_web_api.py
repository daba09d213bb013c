"""The dashboard's JSON API and pages in-process (httpx's ASGI transport) on a real database:
every endpoint for every role, credentials, CSRF, escaping, audit, errors."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from scheduler import api
from scheduler.cli import main
from scheduler.core.domain import ExecutionStatus
from scheduler.web import create_app
from scheduler.web.bridge import call
from tests.conftest import run_sync
from tests.support.procs import query

PASSWORD = "correct horse battery"
XSS = "<script>alert(1)</script>"


@dataclass
class Web:
    app: Any
    client: httpx.AsyncClient
    token: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[role]}"}


def sql(database_url: str, statement: str, *args: object) -> list[dict[str, Any]]:
    """`query` from inside a running event loop (on its own loop, in another thread)."""

    async def run() -> list[dict[str, Any]]:
        return await asyncio.to_thread(query, database_url, statement, *args)

    return run_sync(run())


def basic(name: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
async def web(database_url: str, broker_url: str) -> AsyncIterator[Web]:
    tokens = {}
    for role in ("viewer", "operator", "admin"):
        await call(api.aadd_user(role, role, PASSWORD, actor="test"))
        tokens[role] = await call(api.acreate_token(f"{role}-token", role, actor="test"))
    await call(
        api.aupsert_schedule(
            api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *"), actor="test"
        )
    )
    app = create_app(secret_key="test-secret")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield Web(app, client, tokens)


# (method, path, body, least role)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/v1/schedules", None, "viewer"),
    ("GET", "/api/v1/schedules/nightly", None, "viewer"),
    ("GET", "/api/v1/runs", None, "viewer"),
    ("GET", "/api/v1/stats", None, "viewer"),
    ("GET", "/api/v1/audit", None, "viewer"),
    ("POST", "/api/v1/schedules/nightly/trigger", {}, "operator"),
    ("POST", "/api/v1/schedules/nightly/pause", {"reason": "maintenance {n}"}, "operator"),
    ("POST", "/api/v1/schedules/nightly/resume", {}, "operator"),
    ("POST", "/api/v1/schedules/nightly/backfill", {"from": "{past}", "to": "{past}"}, "operator"),
    ("POST", "/api/v1/runs/{run}/revoke", {}, "operator"),
    ("POST", "/api/v1/runs/{failed}/retry", {}, "operator"),
    ("PATCH", "/api/v1/schedules/nightly", {"description": "patched"}, "admin"),
    ("POST", "/api/v1/schedules", {"name": "new-{n}", "task": "demo.noop", "every": "5m"}, "admin"),
    ("DELETE", "/api/v1/schedules/gone-{n}", None, "admin"),
]
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def _failed_run(database_url: str, schedule: str) -> str:
    key = str(uuid.uuid4())
    sql(
        database_url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id, "
        "error_type, error_message, completed_at) SELECT $1, id, task, '[]', '{}', 'schedule', $2, "
        "'RuntimeError', 'boom', now() FROM schedules WHERE name = $3",
        uuid.UUID(key),
        ExecutionStatus.FAILED.id,
        schedule,
    )
    return key


async def test_every_endpoint_for_every_role(web: Web, database_url: str) -> None:
    n = 0
    for method, path, body, least in ENDPOINTS:
        for role in ("viewer", "operator", "admin"):
            n += 1
            await call(
                api.aupsert_schedule(
                    api.ScheduleDefinition(name=f"gone-{n}", task="demo.noop", cron="@daily")
                )
            )
            run = (await web.client.post("/api/v1/schedules/nightly/trigger", json={},
                                         headers=web.auth("operator"))).json()["execution_id"]  # fmt: skip
            url = path.format(n=n, run=run, failed=_failed_run(database_url, "nightly"))
            past = (datetime.now(UTC) - timedelta(days=n)).replace(
                hour=3, minute=0, second=0, microsecond=0
            )
            payload = (
                None
                if body is None
                else {k: str(v).format(n=n, past=past.isoformat()) for k, v in body.items()}
            )
            response = await web.client.request(method, url, json=payload, headers=web.auth(role))
            if RANK[role] < RANK[least]:
                assert response.status_code == 403, (method, url, role, response.text)
                assert "role may not" in response.json()["error"]
            else:
                assert response.status_code in (200, 201), (method, url, role, response.text)
        anonymous = await web.client.request(
            method, path.format(n=0, run=uuid.uuid4(), failed=uuid.uuid4())
        )
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["error"]


async def test_schedule_crud_trigger_and_audit(web: Web) -> None:
    admin = web.auth("admin")
    created = await web.client.post(
        "/api/v1/schedules",
        json={"name": XSS, "task": "demo.noop", "cron": "30 2 * * *", "timezone": "Europe/Paris"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["schedule_text"] == "cron 30 2 * * * (Europe/Paris)"
    again = await web.client.post(
        "/api/v1/schedules",
        json={"name": XSS, "task": "demo.noop", "cron": "@daily"},
        headers=admin,
    )
    assert again.status_code == 409
    path = "/api/v1/schedules/" + httpx.URL(XSS).raw_path.decode().lstrip("/").replace("/", "%2F")
    shown = await web.client.get(path, headers=admin)
    assert shown.status_code == 200, shown.text
    assert len(shown.json()["upcoming"]) == 10
    patched = await web.client.patch(path, json={"every": "10m"}, headers=admin)
    assert patched.status_code == 200, patched.text
    assert (patched.json()["interval_seconds"], patched.json()["cron"]) == (600, None)
    triggered = await web.client.post(path + "/trigger", json={"force": True}, headers=admin)
    assert triggered.status_code == 201, triggered.text
    run = await web.client.get(f"/api/v1/runs/{triggered.json()['execution_id']}", headers=admin)
    assert (run.json()["schedule"], run.json()["trigger"], run.json()["status"]) == (
        XSS,
        "manual",
        "queued",
    )
    deleted = await web.client.delete(path, headers=admin)
    assert deleted.status_code == 200
    assert (await web.client.get(path, headers=admin)).status_code == 404

    entries = (await web.client.get("/api/v1/audit", headers=admin)).json()["entries"]
    mine = [(e["actor"], e["action"]) for e in entries if e["target"] == XSS]
    assert mine == [
        ("token:admin-token", "schedule.delete"),
        ("token:admin-token", "schedule.trigger"),
        ("token:admin-token", "schedule.update"),
        ("token:admin-token", "schedule.create"),
    ]

    page = await web.client.get("/schedules", headers=admin)
    assert XSS not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


async def test_runs_filters_cursor_and_estimated_count(web: Web, database_url: str) -> None:
    viewer = web.auth("viewer")
    sql(
        database_url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id, created_at, "
        "worker, duration_ms) SELECT gen_random_uuid(), s.id, 'demo.noop', '[]', '{}', "
        "CASE WHEN g % 2 = 0 THEN 'schedule' ELSE 'manual' END, CASE WHEN g % 3 = 0 THEN $1::smallint ELSE $2::smallint END, "
        "now() - g * interval '1 second', 'w' || (g % 2), g FROM schedules s, generate_series(1, 10050) g",
        ExecutionStatus.FAILED.id,
        ExecutionStatus.SUCCESS.id,
    )
    everything = (
        await web.client.get("/api/v1/runs", params={"limit": 100}, headers=viewer)
    ).json()
    assert everything["estimated"] is True
    assert everything["count"] > 10_000
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {
            "limit": 40,
            "status": "failed",
            "trigger": "manual",
            "worker": "w1",
        }
        if cursor:
            params["cursor"] = cursor
        page = (await web.client.get("/api/v1/runs", params=params, headers=viewer)).json()
        assert page["estimated"] is False
        assert page["count"] == len([g for g in range(1, 10051) if g % 3 == 0 and g % 2 == 1])
        assert {(r["status"], r["trigger"], r["worker"]) for r in page["runs"]} == {
            ("failed", "manual", "w1")
        }
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next"]
    assert len(seen) == len(set(seen)) == 120
    # trigger and worker have no index: past 10,000 candidates the count is estimated
    wide = (
        await web.client.get(
            "/api/v1/runs",
            params={"limit": 40, "trigger": "manual", "worker": "w1"},
            headers=viewer,
        )
    ).json()
    assert wide["estimated"] is True
    assert wide["count"] >= 40
    recent = (await web.client.get(
        "/api/v1/runs", params={"schedule": "nightly", "since": "2000-01-01T00:00:00Z", "limit": 5},
        headers=viewer)).json()  # fmt: skip
    assert len(recent["runs"]) == 5
    stats = (await web.client.get("/api/v1/stats", params={"since": "7d"}, headers=viewer)).json()
    assert stats["tasks"][0]["task"] == "demo.noop"
    assert stats["tasks"][0]["runs"] == 10050
    for path in ("/runs?status=failed&worker=w1", "/failures?window=24h", "/tasks?window=7d", "/"):
        assert (await web.client.get(path, headers=viewer)).status_code == 200, path


async def test_pause_resume_backfill_are_audited(web: Web) -> None:
    operator = web.auth("operator")
    paused = await web.client.post(
        "/api/v1/schedules/nightly/pause", json={"reason": "db migration"}, headers=operator
    )
    assert paused.status_code == 200, paused.text
    assert (paused.json()["enabled"], paused.json()["paused_reason"]) == (False, "db migration")
    assert paused.json()["paused_by"] == "token:operator-token"
    no_reason = await web.client.post("/api/v1/schedules/nightly/pause", json={}, headers=operator)
    assert no_reason.status_code == 400
    resumed = await web.client.post("/api/v1/schedules/nightly/resume", headers=operator)
    assert resumed.status_code == 200
    assert resumed.json()["enabled"] is True
    now = datetime.now(UTC)
    body = {  # exactly three days long: three nightly slots whatever the time of day
        "from": (now - timedelta(days=3, hours=1)).isoformat(),
        "to": (now - timedelta(hours=1)).isoformat(),
    }
    done = await web.client.post("/api/v1/schedules/nightly/backfill", json=body, headers=operator)
    assert done.status_code == 201, done.text
    assert len(done.json()["created"]) == 3
    again = await web.client.post("/api/v1/schedules/nightly/backfill", json=body, headers=operator)
    assert (len(again.json()["created"]), len(again.json()["existing"])) == (0, 3)
    runs = (
        await web.client.get("/api/v1/runs", params={"trigger": "backfill"}, headers=operator)
    ).json()
    assert runs["count"] == 3
    tree = (await web.client.get(f"/api/v1/runs/{runs['runs'][0]['id']}", headers=operator)).json()[
        "tree"
    ]
    assert [node["id"] for node in tree] == [runs["runs"][0]["id"]]
    entries = (await web.client.get("/api/v1/audit", headers=operator)).json()["entries"]
    assert [(e["action"], e["reason"]) for e in entries[:4]] == [
        ("schedule.backfill", None),
        ("schedule.backfill", None),
        ("schedule.resume", None),
        ("schedule.pause", "db migration"),
    ]
    bad = await web.client.post(
        "/api/v1/schedules/nightly/backfill", json={"from": "x", "to": "y"}, headers=operator
    )
    assert bad.status_code == 400


async def test_retry_and_revoke(web: Web, database_url: str) -> None:
    operator = web.auth("operator")
    failed = _failed_run(database_url, "nightly")
    retried = await web.client.post(f"/api/v1/runs/{failed}/retry", headers=operator)
    assert retried.status_code == 201, retried.text
    new = retried.json()["execution_id"]
    assert retried.json()["retry_of"] == failed
    made = (await web.client.get(f"/api/v1/runs/{new}", headers=operator)).json()
    assert (made["trigger"], made["parent_id"], made["root_id"]) == ("retry", failed, failed)
    assert made["scheduled_for"] is None
    assert made["status"] in ("queued", "running", "success")
    still = await web.client.post(f"/api/v1/runs/{new}/retry", headers=operator)
    assert still.status_code == 409, still.text
    assert "\n" not in still.json()["error"]
    revoked = await web.client.post(f"/api/v1/runs/{new}/revoke", headers=operator)
    assert revoked.status_code == 200, revoked.text
    assert (await web.client.get(f"/api/v1/runs/{new}", headers=operator)).json()[
        "status"
    ] == "revoked"
    assert (
        await web.client.post(f"/api/v1/runs/{new}/revoke", headers=operator)
    ).status_code == 409
    actions = {(e["action"], e["target"]) for e in await call(api.aaudit_log())}
    assert {("run.retry", failed), ("run.revoke", new)} <= actions
    # a revoked run can be retried too; the retry of a retry keeps the first run as root
    again = await web.client.post(f"/api/v1/runs/{new}/retry", headers=operator)
    assert again.status_code == 201, again.text
    second = (
        await web.client.get(f"/api/v1/runs/{again.json()['execution_id']}", headers=operator)
    ).json()
    assert (second["trigger"], second["parent_id"], second["root_id"]) == ("retry", new, failed)


async def test_errors_are_json_with_one_line_and_the_right_status(web: Web) -> None:
    admin = web.auth("admin")
    cases = [
        ("GET", "/api/v1/schedules/missing", None, None, 404),
        ("GET", "/api/v1/runs/not-a-uuid", None, None, 404),
        ("GET", f"/api/v1/runs/{uuid.uuid4()}", None, None, 404),
        ("GET", "/api/v1/runs?limit=0", None, None, 400),
        ("GET", "/api/v1/runs?status=nope", None, None, 400),
        ("GET", "/api/v1/runs?since=yesterday", None, None, 400),
        ("GET", "/api/v1/runs?cursor=bogus", None, None, 400),
        ("GET", "/api/v1/runs?task=a%00b", None, None, 400),
        ("GET", "/api/v1/nothing-here", None, None, 404),
        ("POST", "/api/v1/schedules", b"{not json", "application/json", 400),
        ("POST", "/api/v1/schedules", b"name=x", "application/x-www-form-urlencoded", 415),
        ("POST", "/api/v1/schedules", b'{"name": "x", "task": "no.such", "cron": "@daily"}', "application/json", 400),
        ("POST", "/api/v1/schedules", b'{"name": "x", "task": "demo.noop", "cron": "99 * * * *"}', "application/json", 400),
        ("POST", "/api/v1/schedules", b'{"name": "x", "task": "demo.noop", "max_runs": "many", "cron": "@daily"}', "application/json", 400),
        ("PUT", "/api/v1/schedules/nightly", None, None, 405),
    ]  # fmt: skip
    for method, path, body, content_type, status in cases:
        headers = dict(admin)
        if content_type:
            headers["content-type"] = content_type
        response = await web.client.request(method, path, content=body, headers=headers)
        assert response.status_code == status, (method, path, response.text)
        message = response.json()["error"]
        assert message
        assert "\n" not in message
        assert "postgres" not in message.lower()


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


async def test_overview_lists_schedules_failing_now(web: Web, database_url: str) -> None:
    await call(
        api.aupsert_schedule(api.ScheduleDefinition(name="mended", task="demo.noop", cron="@daily"))
    )
    _failed_run(database_url, "nightly")
    _failed_run(database_url, "mended")
    sql(
        database_url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id, created_at) "
        "SELECT gen_random_uuid(), id, task, '[]', '{}', 'manual', $1, now() + interval '1 second' "
        "FROM schedules WHERE name = 'mended'",
        ExecutionStatus.SUCCESS.id,
    )
    data = await call(api.aoverview())
    assert [(f["name"], f["status"]) for f in data["failing"]] == [("nightly", "failed")]
    page = await web.client.get("/", headers=web.auth("viewer"))
    assert "boom" in page.text
