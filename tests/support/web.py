"""The dashboard in-process (httpx's ASGI transport) for integration tests: a client with a
token per role, Basic credentials, and SQL run from inside the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from scheduler.core.domain import ExecutionStatus
from tests.support.procs import query
from tests.support.services import run_sync

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


def failed_run(database_url: str, schedule: str) -> str:
    """A failed run of `schedule`, written by hand; its id."""
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
