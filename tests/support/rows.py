"""Execution rows read and written through the process's runtime (eager tracked calls)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from scheduler.core.domain import ExecutionStatus
from scheduler.runtime.db import get_runtime


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with get_runtime().session() as session:
            result = await session.execute(text(sql), params)
            return [dict(r) for r in result.mappings()]

    return get_runtime().run(fetch())


def execution(execution_id: str) -> dict[str, Any]:
    found = rows(
        "SELECT e.*, s.code AS status FROM executions e "
        "JOIN execution_statuses s ON s.id = e.status_id WHERE e.id = :id",
        id=uuid.UUID(execution_id),
    )
    assert found, f"no row for {execution_id}"
    return found[0]


def insert(status: ExecutionStatus, *, task: str = "demo.noop", **extra: Any) -> str:
    execution_id = str(uuid.uuid4())
    columns = {"id": uuid.UUID(execution_id), "task": task, "status_id": status.id, **extra}
    names = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)

    async def write() -> None:
        async with get_runtime().session() as session, session.begin():
            await session.execute(
                text(
                    f"INSERT INTO executions ({names}, args, kwargs, trigger) "
                    f"VALUES ({values}, '[]', '{{}}', 'manual')"
                ),
                columns,
            )

    get_runtime().run(write())
    return execution_id
