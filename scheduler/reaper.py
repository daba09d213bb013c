"""Runs whose worker died end as `lost`.

A run is lost when its worker process is gone (same host: its pid no longer exists) or when
it has stayed `running` past its hard time limit plus a margin (any host). Runs of tasks
that use `acks_late` + `reject_on_worker_lost` are redelivered by the broker and claimed
again; the reaper only catches those still running past the limit.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import get_settings
from scheduler.repository import SchedulerRepository as repo


def _pid_gone(worker: str | None, host: str) -> bool:
    if not worker or ":" not in worker:
        return False
    worker_host, _, pid_text = worker.rpartition(":")
    if worker_host != host or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def reap_lost(
    session: AsyncSession,
    *,
    now: datetime,
    time_limits_s: Mapping[str, float] | None = None,
    grace_s: float = 10.0,
) -> int:
    """Mark lost runs; returns how many. `time_limits_s`: hard limit per task name."""
    settings = get_settings()
    host = socket.gethostname()
    limits = time_limits_s or {}
    dead: list[uuid.UUID] = []
    overdue: list[uuid.UUID] = []
    for row in await repo.running_executions(session):
        started = row["started_at"]
        if started is None:
            continue
        age_s = (now - started).total_seconds()
        if age_s > grace_s and _pid_gone(row["worker"], host):
            dead.append(row["id"])
            continue
        limit = limits.get(row["task"])
        if limit and now - started > timedelta(seconds=limit + settings.worker_lost_margin_s):
            overdue.append(row["id"])
    lost = await repo.mark_lost(session, dead, now=now, reason="the worker process is gone")
    lost += await repo.mark_lost(
        session,
        overdue,
        now=now,
        reason="still running past its hard time limit",
    )
    return lost
