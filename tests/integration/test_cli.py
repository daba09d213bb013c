"""The `scheduler` CLI against a real database: every verb, every user error."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import one_error_line
from tests.support.procs import query
from tests.support.status import QUEUED, SUCCESS


def test_add_list_show_update_enable_disable_remove(cli: Any, database_url: str) -> None:
    added = cli("schedules", "add", "report", "--task", "demo.sleep", "--cron", "30 1 * * *",
                "--tz", "Europe/London", "--kwargs", '{"seconds": 1}', "--misfire", "skip",
                "--overlap", "skip", "--jitter", "5", "--max-runs", "10", "--description", "nightly")  # fmt: skip
    assert added.exit_code == 0, added.output
    cli("schedules", "add", "ping", "--task", "demo.noop", "--every", "1m30s")
    listing = json.loads(cli("schedules", "list", "--json").output)
    by_name = {s["name"]: s for s in listing}
    assert by_name["report"]["cron"] == "30 1 * * *"
    assert by_name["report"]["timezone"] == "Europe/London"
    assert by_name["report"]["kwargs"] == {"seconds": 1}
    assert by_name["report"]["misfire_policy"] == "skip"
    assert by_name["ping"]["interval_seconds"] == 90
    shown = json.loads(cli("schedules", "show", "report", "--json").output)
    assert len(shown["upcoming"]) == 5
    assert all(u.endswith(("T00:30:00+00:00", "T01:30:00+00:00")) for u in shown["upcoming"])
    assert cli("schedules", "show", "report").exit_code == 0
    updated = cli("schedules", "update", "report", "--cron", "0 4 * * *")
    assert "updated" in updated.output
    assert "unchanged" in cli("schedules", "update", "report", "--cron", "0 4 * * *").output
    assert cli("schedules", "disable", "ping").exit_code == 0
    assert (
        query(database_url, "SELECT enabled FROM schedules WHERE name='ping'")[0]["enabled"]
        is False
    )
    assert cli("schedules", "enable", "ping").exit_code == 0
    assert cli("schedules", "remove", "ping", "--yes").exit_code == 0
    assert [s["name"] for s in json.loads(cli("schedules", "list", "--json").output)] == ["report"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--task", "demo.noop", "--cron", "61 * * * *"], "invalid cron expression"),
        (["--task", "demo.noop", "--every", "5s", "--tz", "Mars/Base"], "unknown time zone"),
        (["--task", "no.such.task", "--every", "5s"], "is not registered"),
        (["--task", "demo.noop", "--every", "5s", "--args", "{oops"], "--args is not valid JSON"),
        (
            ["--task", "demo.noop", "--every", "5s", "--args", '{"a": 1}'],
            "args must be a JSON array",
        ),
        (["--task", "demo.noop", "--every", "soon"], "invalid duration"),
        (["--task", "demo.noop", "--at", "tomorrow"], "invalid time"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    cli: Any, database_url: str, args: list[str], expected: str
) -> None:
    line = one_error_line(cli("schedules", "add", "x", *args))
    assert expected in line
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0


def test_not_found_and_duplicate_errors(cli: Any) -> None:
    cli("schedules", "add", "a", "--task", "demo.noop", "--every", "5s")
    assert "exists" in one_error_line(
        cli("schedules", "add", "a", "--task", "demo.noop", "--every", "5s")
    )
    for verb in ("show", "update", "enable", "disable", "remove", "trigger"):
        assert "no schedule named" in one_error_line(cli("schedules", verb, "missing"))
    assert "no execution" in one_error_line(cli("show", str(uuid.uuid4())))
    assert "not an execution id" in one_error_line(cli("show", "nope"))
    assert "no schedule named" in one_error_line(cli("history", "--schedule", "missing"))


def test_usage_errors_exit_2(cli: Any) -> None:
    assert cli("schedules", "add", "a", "--task", "demo.noop").exit_code == 2
    assert (
        cli(
            "schedules", "add", "a", "--task", "demo.noop", "--every", "5s", "--cron", "@daily"
        ).exit_code
        == 2
    )


def test_trigger_history_show_stats_prune(cli: Any, database_url: str) -> None:
    cli("schedules", "add", "job", "--task", "demo.noop", "--cron", "@daily", "--overlap", "skip")
    first = json.loads(cli("schedules", "trigger", "job", "--json").output)
    assert first["status"] == "queued"
    second = json.loads(cli("schedules", "trigger", "job", "--json").output)
    assert second["status"] == "skipped"
    forced = json.loads(cli("schedules", "trigger", "job", "--force", "--json").output)
    assert forced["status"] == "queued"
    runs = json.loads(cli("history", "--schedule", "job", "--json").output)
    assert [r["status"] for r in runs].count("queued") == 2
    assert {r["trigger"] for r in runs} == {"manual"}
    assert cli("history", "--status", "skipped").exit_code == 0
    detail = json.loads(cli("show", runs[0]["id"], "--json").output)
    assert detail["schedule"] == "job"
    assert "execution_id" in detail["kwargs"] or detail["status"] == "skipped"
    query(
        database_url,
        f"UPDATE executions SET status_id = {SUCCESS}, duration_ms = 100, completed_at = now(), "
        f"created_at = now() - interval '40 days' WHERE status_id = {QUEUED}",
    )
    stats = json.loads(cli("stats", "--since", "60d", "--json").output)
    assert stats[0]["schedule"] == "job"
    assert stats[0]["success"] == 2
    assert stats[0]["skipped"] == 1
    assert stats[0]["p50_ms"] == 100
    assert cli("stats").exit_code == 0
    pruned = json.loads(cli("prune", "--older-than", "30d", "--json").output)
    assert pruned["deleted"] == 2
    assert query(database_url, "SELECT count(*) AS n FROM executions")[0]["n"] == 1


def test_apply_export_round_trip(cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "schedules.yaml"
    spec.write_text(
        "schedules:\n"
        "  - name: nightly\n    task: demo.sleep\n    cron: 30 1 * * *\n"
        "    timezone: Europe/London\n    kwargs: {seconds: 2}\n"
        "  - name: heartbeat\n    task: demo.noop\n    every: 30s\n"
        "  - name: once\n    task: demo.noop\n    at: 2030-01-01T00:00:00Z\n    description: \"ünïcode 'quoted'\"\n"
    )
    dry = cli("apply", str(spec), "--dry-run", "--json")
    assert json.loads(dry.output)["create"] == ["nightly", "heartbeat", "once"]
    assert cli("export").output == "schedules: []\n"
    applied = json.loads(cli("apply", str(spec), "--json").output)
    assert sorted(applied["create"]) == ["heartbeat", "nightly", "once"]
    exported = cli("export").output
    again = json.loads(cli("apply", str(spec), "--json").output)
    assert again["create"] == again["update"] == []
    round_trip = tmp_path / "exported.yaml"
    round_trip.write_text(exported)
    assert json.loads(cli("apply", str(round_trip), "--json").output)["unchanged"] == sorted(
        ["heartbeat", "nightly", "once"]
    )
    assert cli("export").output == exported
    spec.write_text("schedules:\n  - name: heartbeat\n    task: demo.noop\n    every: 1m\n")
    pruned = json.loads(cli("apply", str(spec), "--prune", "--json").output)
    assert pruned["update"] == ["heartbeat"]
    assert sorted(pruned["delete"]) == ["nightly", "once"]


def test_apply_rejects_bad_files_without_writing(
    cli: Any, tmp_path: Path, database_url: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schedules:\n  - name: ok\n    task: demo.noop\n    every: 5s\n  - name: broken\n    task: demo.noop\n    cron: nope\n"
    )
    assert "schedule #2" in one_error_line(cli("apply", str(bad)))
    bad.write_text("schedules: [\n")
    assert "not valid YAML" in one_error_line(cli("apply", str(bad)))
    bad.write_text("schedules:\n  - name: a\n    task: demo.noop\n    every: 5s\n    colour: red\n")
    assert "unknown field" in one_error_line(cli("apply", str(bad)))
    assert "cannot read" in one_error_line(cli("apply", str(tmp_path / "missing.yaml")))
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0


def test_next_tasks_and_reap(cli: Any) -> None:
    out = json.loads(
        cli(
            "next",
            "--cron",
            "*/15 * * * *",
            "--tz",
            "America/New_York",
            "--after",
            "2026-11-01T05:40:00+00:00",
            "--count",
            "3",
            "--json",
        ).output
    )
    assert [o["local"] for o in out] == [
        "2026-11-01T01:45:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:15:00-05:00",
    ]
    assert "unknown time zone" in one_error_line(
        cli("next", "--cron", "@daily", "--tz", "Nowhere/X")
    )
    names = {t["name"] for t in json.loads(cli("tasks", "--json").output)}
    assert {
        "demo.noop",
        "demo.sleep",
        "demo.fail",
        "demo.flaky",
        "demo.progress",
        "demo.async_noop",
    } <= names
    assert json.loads(cli("reap", "--json").output) == {"lost": 0}


def test_a_real_subprocess(database_url: str, broker_url: str) -> None:
    add = [sys.executable, "-m", "scheduler.cli", "schedules", "add", "sub"]
    add += ["--task", "demo.noop", "--every", "10s"]
    run = subprocess.run([*add, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["name"] == "sub"
    bad = subprocess.run(add, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: a schedule named 'sub' exists")
