"""The reaper against real PostgreSQL: dead local workers and overdue runs end `lost`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.beat.reaper import reap_lost
from scheduler.cli import main
from scheduler.core.domain import ExecutionStatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def dead_pid() -> int:
    """The pid of a process that has exited (and been waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def running(
    session: AsyncSession, *, task: str, worker: str, started_at: datetime
) -> uuid.UUID:
    execution_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO executions (id, task, args, kwargs, trigger, status_id, worker, "
            "started_at, attempt) VALUES (:id, :task, '[]', '{}', 'schedule', :running, "
            ":worker, :started_at, 1)"
        ),
        {
            "id": execution_id,
            "task": task,
            "running": ExecutionStatus.RUNNING.id,
            "worker": worker,
            "started_at": started_at,
        },
    )
    return execution_id


async def status_of(session: AsyncSession, execution_id: uuid.UUID) -> dict[str, object]:
    result = await session.execute(
        text(
            "SELECT s.code, e.completed_at, e.duration_ms, e.error_type, e.error_message "
            "FROM executions e JOIN execution_statuses s ON s.id = e.status_id WHERE e.id = :id"
        ),
        {"id": execution_id},
    )
    return dict(result.mappings().one())


async def test_reaper_marks_dead_and_overdue_runs_lost(session: AsyncSession) -> None:
    host = socket.gethostname()
    old = NOW - timedelta(minutes=2)
    dead = await running(session, task="demo.sleep", worker=f"{host}:{dead_pid()}", started_at=old)
    just_started = await running(
        session, task="demo.sleep", worker=f"{host}:{dead_pid()}", started_at=NOW
    )
    alive = await running(
        session, task="demo.sleep", worker=f"{host}:{os.getpid()}", started_at=old
    )
    elsewhere = await running(session, task="demo.sleep", worker="other-host:1", started_at=old)
    overdue = await running(
        session, task="reports.slow", worker="other-host:2", started_at=NOW - timedelta(hours=1)
    )

    lost = await reap_lost(session, now=NOW, time_limits_s={"reports.slow": 600.0})

    assert lost == 2
    dead_row = await status_of(session, dead)
    assert dead_row["code"] == "lost"
    assert dead_row["completed_at"] == NOW
    assert dead_row["duration_ms"] == 120_000
    assert dead_row["error_message"] == "the worker process is gone"
    overdue_row = await status_of(session, overdue)
    assert overdue_row["code"] == "lost"
    assert overdue_row["error_message"] == "still running past its hard time limit"
    # within the grace period, alive, or on a host whose pids we cannot check: untouched
    for execution_id in (just_started, alive, elsewhere):
        assert (await status_of(session, execution_id))["code"] == "running"
    # idempotent
    assert await reap_lost(session, now=NOW, time_limits_s={"reports.slow": 600.0}) == 0
    await session.rollback()


async def test_overdue_only_past_limit_plus_margin(session: AsyncSession) -> None:
    """Margin = settings.worker_lost_margin_s (60 s by default)."""
    limit_s = 100.0
    inside = await running(
        session,
        task="reports.slow",
        worker="other-host:3",
        started_at=NOW - timedelta(seconds=limit_s + 59),
    )
    past = await running(
        session,
        task="reports.slow",
        worker="other-host:4",
        started_at=NOW - timedelta(seconds=limit_s + 61),
    )
    assert await reap_lost(session, now=NOW, time_limits_s={"reports.slow": limit_s}) == 1
    assert (await status_of(session, inside))["code"] == "running"
    assert (await status_of(session, past))["code"] == "lost"
    await session.rollback()


async def test_reap_command(session: AsyncSession) -> None:
    host = socket.gethostname()
    await running(
        session,
        task="demo.sleep",
        worker=f"{host}:{dead_pid()}",
        started_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    await session.commit()
    runner = CliRunner()
    first = runner.invoke(main, ["reap", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {"lost": 1}
    again = runner.invoke(main, ["reap"])
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "marked 0 runs lost"
