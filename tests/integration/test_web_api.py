"""The dashboard's JSON API in-process (httpx's ASGI transport) on a real database: every
endpoint for every role, schedule CRUD, runs, pause/resume/backfill, retry/revoke, escaping,
audit and errors. Sign-in and the CLI's accounts are in test_web_auth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from scheduler import api
from scheduler.core.domain import ExecutionStatus
from scheduler.web.bridge import call
from tests.support.web import XSS, Web, failed_run, sql

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
            url = path.format(n=n, run=run, failed=failed_run(database_url, "nightly"))
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
    failed = failed_run(database_url, "nightly")
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


async def test_overview_lists_schedules_failing_now(web: Web, database_url: str) -> None:
    await call(
        api.aupsert_schedule(api.ScheduleDefinition(name="mended", task="demo.noop", cron="@daily"))
    )
    failed_run(database_url, "nightly")
    failed_run(database_url, "mended")
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
