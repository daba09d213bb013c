"""What the store's modules share: status id groups, JSON text, id coercion, the executor type."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from scheduler.core.domain import ExecutionStatus
from scheduler.store.models import Execution, Schedule

FAILURE_STATUS_IDS = (
    ExecutionStatus.FAILED.id,
    ExecutionStatus.TIMEOUT.id,
    ExecutionStatus.LOST.id,
)
"""Terminal failures: what `pause_after_failures` counts."""


Executor = AsyncSession | AsyncConnection
"""What the hot-path writes accept: a session, or a bare (autocommit) connection."""


def json_text(value: Any) -> str:
    """`json.dumps`, with the usual empty values of args and kwargs spelled out."""
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"
    return json.dumps(value)


def with_status(row: dict[str, Any]) -> dict[str, Any]:
    row["status"] = ExecutionStatus.from_id(row.pop("status_id")).value
    return row


def uuid_or_none(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return as_uuid(value)
    except ValueError:
        return None  # a task id that is not a UUID (sent by hand): no link


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


MESSAGE_COLUMNS = (
    Execution.id,
    Execution.task,
    Execution.args,
    Execution.kwargs,
    Execution.schedule_id,
    Schedule.options,
)
"""What publishing a run again needs (select with an outer join on its schedule)."""


async def transaction_driver(session: AsyncSession) -> Any:
    """The asyncpg connection under `session`, inside the session's transaction (begun on
    the server first if no statement has run yet): for a hot statement in plain SQL, one
    round trip with no SQLAlchemy result processing."""
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():
        await session.execute(text("SELECT 1"))  # SQLAlchemy begins the transaction lazily
    return driver
