"""Runs sent like the beat sends them (a row first, task id = execution id), and read back."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from config.celery import app
from tests.support.procs import query, wait_for
from tests.support.status import QUEUED


def send(name: str, **kwargs: Any) -> str:
    """Publish like the beat: a pending row first, then task_id = execution_id."""
    execution_id = str(uuid.uuid4())
    return send_with_id(execution_id, name, **kwargs)


def send_with_id(execution_id: str, name: str, **kwargs: Any) -> str:
    url = os.environ["DATABASE_URL"]
    query(
        url,
        "INSERT INTO executions (id, task, args, kwargs, trigger, status_id) "
        f"VALUES ($1, $2, '[]', $3, 'manual', {QUEUED}) ON CONFLICT (id) DO NOTHING",
        uuid.UUID(execution_id),
        name,
        json.dumps(kwargs),
    )
    options = kwargs.pop("_options", {})
    app.send_task(
        name, kwargs={**kwargs, "execution_id": execution_id}, task_id=execution_id, **options
    )
    return execution_id


def row(execution_id: str) -> dict[str, Any]:
    rows = query(
        os.environ["DATABASE_URL"],
        "SELECT e.*, s.code AS status FROM executions e "
        "JOIN execution_statuses s ON s.id = e.status_id WHERE e.id = $1",
        uuid.UUID(execution_id),
    )
    return rows[0] if rows else {}


def finished(execution_id: str, timeout_s: float = 20) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        r = row(execution_id)
        return r if r and r["status"] not in ("pending", "queued", "running", "retrying") else None

    return wait_for(done, timeout_s=timeout_s, interval_s=0.05)
