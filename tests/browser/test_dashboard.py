"""The dashboard in a real browser (Playwright driving Debian's Chromium) against real
processes: a web server, a beat and a worker on a database of their own."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler import api
from scheduler.core.domain import ExecutionStatus
from tests.support.procs import Procs, free_port, http_ok, module_database, processes, wait_for
from tests.support.procs import query as _query

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "browser test password"
XSS = "<script>alert(1)</script>"

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: install the chromium package", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (the chromium package)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@dataclass
class Site:
    url: str
    database_url: str
    procs: Procs

    def path(self, path: str) -> str:
        return self.url.rstrip("/") + path


def query(database_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    """One statement, on a thread of its own: Playwright's sync API holds this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_query, database_url, sql, *args).result()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with module_database(flush_broker=True) as url:
        api.add_user("admin", "admin", PASSWORD)
        api.add_user("viewer", "viewer", PASSWORD)
        api.upsert_schedule(api.ScheduleDefinition(name="nightly-report", task="demo.noop",
                                                   cron="30 2 * * *", timezone="Europe/Paris"))  # fmt: skip
        api.upsert_schedule(api.ScheduleDefinition(name=XSS, task="demo.noop", cron="0 0 1 1 *"))
        query(
            url,
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id, "
            "created_at, started_at, completed_at, duration_ms, worker, error_type, error_message) "
            "SELECT gen_random_uuid(), s.id, s.task, '[]', '{}', 'schedule', "
            "(ARRAY[$1, $2, $1, $1]::smallint[])[1 + g % 4], now() - g * interval '7 minutes', "
            "now() - g * interval '7 minutes', now() - g * interval '7 minutes' + g * interval '3 ms', "
            "g * 3, 'seed-worker', CASE WHEN g % 4 = 1 THEN 'RuntimeError' END, "
            "CASE WHEN g % 4 = 1 THEN 'seeded failure' END "
            "FROM schedules s, generate_series(1, 120) g WHERE s.name = 'nightly-report'",
            ExecutionStatus.SUCCESS.id,
            ExecutionStatus.FAILED.id,
        )
        port = free_port()
        web_url = f"http://127.0.0.1:{port}/"
        log_dir = tmp_path_factory.mktemp("browser-procs")
        with processes(log_dir) as procs:
            procs.worker("-P", "threads", "-c", "2")
            procs.beat()
            procs.start("web", "-m", "scheduler.cli", "web", "--port", str(port), "-l", "warning")
            wait_for(lambda: http_ok(web_url + "readyz"), timeout_s=60, interval_s=0.2)
            procs.wait_ready(interval_s=0.2)
            yield Site(web_url, url, procs)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def signed_in(browser: Browser, site: Site, user: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    page.goto(site.path("/"))
    expect(page).to_have_url(site.path("/login?next=%2F"))
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(user)
    return page


COUNT_COLOURS = """async (source) => {
  const image = new Image();
  image.src = source;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) {
    seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return seen.size;
}"""


def distinct_colours(page: Page, png: bytes) -> int:
    """How many distinct RGB values a PNG holds, counted by the browser in a blank page."""
    blank = page.context.new_page()
    try:
        source = "data:image/png;base64," + base64.b64encode(png).decode()
        return int(blank.evaluate(COUNT_COLOURS, source))
    finally:
        blank.close()


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=False)
    assert target.stat().st_size > 5_000
    assert distinct_colours(page, target.read_bytes()) >= 8, f"{name} looks blank"


def test_sign_in_and_every_page_renders_with_data(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    page = signed_in(browser, site, "admin")
    failing_run = query(site.database_url, "SELECT id FROM executions WHERE status_id = $1 LIMIT 1",
                        ExecutionStatus.FAILED.id)[0]["id"]  # fmt: skip
    checks: list[tuple[str, str, str]] = [
        ("overview", "/", "Runs per hour by status"),
        ("schedules", "/schedules", "nightly-report"),
        ("schedule", "/schedules/nightly-report", "Next 10 fire times"),
        ("runs", "/runs", "seed-worker"),
        ("run", f"/runs/{failing_run}", "seeded failure"),
        ("tasks", "/tasks?window=7d", "demo.noop"),
        ("failures", "/failures?window=7d", "RuntimeError"),
        ("audit", "/audit", "session.sign_in"),
    ]
    for name, path, text in checks:
        response = page.goto(site.path(path))
        assert response is not None
        assert response.status == 200, path
        expect(page.locator("main")).to_contain_text(text)
        screenshot(page, tmp_path, name)
    page.goto(site.path("/schedules/nightly-report"))
    assert page.locator("svg.chart rect").count() > 50
    expect(page.locator("main table").first).to_contain_text("CET")
    page.goto(site.path("/runs?status=failed"))
    statuses = page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert set(statuses) == {"failed"}
    page.goto(site.path("/login"))
    screenshot(page, tmp_path, "login")
    page.context.close()


def test_run_now_appears_live_on_the_runs_page_and_succeeds(browser: Browser, site: Site) -> None:
    runs = signed_in(browser, site, "admin")
    runs.goto(site.path("/runs?schedule=nightly-report&trigger=manual"))
    expect(runs.locator("main")).to_contain_text("No runs.")
    detail = runs.context.new_page()
    detail.goto(site.path("/schedules/nightly-report"))
    detail.click("#run-now button[type=submit]")
    wait_for(lambda: "/runs/" in detail.url, timeout_s=10)
    execution_id = detail.url.rsplit("/", 1)[1]
    uuid.UUID(execution_id)
    expect(detail.locator("#run-status")).to_have_text("success", timeout=20_000)
    row = runs.locator(f"tbody tr:has(a[href$='{execution_id}'])")
    expect(row).to_have_count(1, timeout=10_000)  # appeared without a reload
    expect(row).to_have_attribute("data-status", "success", timeout=20_000)
    audit = query(site.database_url, "SELECT actor, action FROM audit_log WHERE detail->>'execution_id' = $1",
                  execution_id)  # fmt: skip
    assert audit == [{"actor": "admin", "action": "schedule.trigger"}]
    runs.context.close()


def test_pause_with_reason_then_resume_audited_and_backfill(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, "admin")
    page.goto(site.path("/schedules/nightly-report"))
    page.fill("#pause input[name=reason]", "maintenance window")
    page.click("#pause button[type=submit]")
    expect(page.locator("main h1")).to_contain_text("paused")
    expect(page.locator("main")).to_contain_text("Paused by admin")
    expect(page.locator("main")).to_contain_text("maintenance window")
    page.goto(site.path("/schedules?state=paused"))
    expect(page.locator("tbody")).to_contain_text("maintenance window")
    page.goto(site.path("/schedules/nightly-report"))
    page.click("#resume button[type=submit]")
    expect(page.locator("main h1")).to_contain_text("enabled")
    page.goto(site.path("/audit"))
    rows = page.locator("tbody tr")
    expect(rows.nth(0)).to_contain_text("schedule.resume")
    expect(rows.nth(1)).to_contain_text("schedule.pause")
    expect(rows.nth(1)).to_contain_text("maintenance window")
    expect(rows.nth(1)).to_contain_text("admin")

    page.goto(site.path("/schedules/nightly-report"))
    now = datetime.now(UTC)
    page.fill("#backfill input[name=from]", (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%MZ"))
    page.fill("#backfill input[name=to]", (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ"))
    page.click("#backfill button[type=submit]")
    expect(page.locator(".flash")).to_contain_text("runs created")
    expect(page.locator("tbody tr[data-status]").first).to_be_visible()
    made = query(
        site.database_url, "SELECT count(*) AS n FROM executions WHERE trigger = 'backfill'"
    )
    assert made[0]["n"] == page.locator("tbody tr[data-status]").count() >= 2
    page.context.close()


def test_viewer_cannot_trigger(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, "viewer")
    page.goto(site.path("/schedules/nightly-report"))
    expect(page.locator("main h1")).to_contain_text("nightly-report")
    assert page.locator("#run-now").count() == 0
    assert page.get_by_role("button", name="Run now").count() == 0
    csrf = page.evaluate("() => document.querySelector('input[name=csrf]').value")
    refused = page.request.post(site.path("/schedules/nightly-report/trigger"), form={"csrf": csrf})
    assert refused.status == 403
    api_refused = page.request.post(site.path("/api/v1/schedules/nightly-report/trigger"),
                                    data="{}", headers={"content-type": "application/json",
                                                        "x-csrf-token": csrf})  # fmt: skip
    assert api_refused.status == 403
    assert "role may not" in api_refused.json()["error"]
    page.context.close()


def test_xss_name_shows_as_text(browser: Browser, site: Site, tmp_path: Path) -> None:
    page = signed_in(browser, site, "admin")
    page.goto(site.path("/schedules"))
    expect(page.locator("main")).to_contain_text(XSS)
    page.get_by_role("link", name=XSS).click()
    expect(page.locator("main h1")).to_contain_text(XSS)
    assert page.evaluate("() => document.querySelectorAll('main script').length") == 0
    screenshot(page, tmp_path, "xss")
    page.context.close()


def test_csrf_refusal(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, "admin")
    page.goto(site.path("/schedules/nightly-report"))
    page.evaluate("() => document.querySelector('#run-now input[name=csrf]').value = 'forged'")
    page.click("#run-now button[type=submit]")
    expect(page.locator("main")).to_contain_text("CSRF token is missing or stale")
    before = query(
        site.database_url, "SELECT count(*) AS n FROM executions WHERE trigger = 'manual'"
    )
    no_token = page.request.post(
        site.path("/schedules/nightly-report/trigger"), form={"overlap": "force"}
    )
    assert no_token.status == 403
    after = query(
        site.database_url, "SELECT count(*) AS n FROM executions WHERE trigger = 'manual'"
    )
    assert before == after
    page.context.close()
