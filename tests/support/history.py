"""Schedules and their runs written and read by hand (asyncpg, own loop), for tests that set
up a history without running anything."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.procs import query


def schedule_row(database_url: str, name: str) -> dict[str, Any]:
    """The `schedules` row named `name`."""
    return query(database_url, "SELECT * FROM schedules WHERE name = $1", name)[0]


def insert_runs(
    database_url: str,
    schedule: str,
    statuses: list[str],
    *,
    minutes_apart: int = 1,
    first_minute: int = 0,
) -> list[uuid.UUID]:
    """Runs of `schedule`, oldest first, finished (or not) with the given status codes."""
    ids = []
    for i, code in enumerate(statuses):
        execution_id = uuid.uuid4()
        ids.append(execution_id)
        query(
            database_url,
            "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, scheduled_for,"
            " status_id, created_at, started_at, completed_at, error_message) "
            "SELECT $1, s.id, s.task, '[]', '{}', 'schedule', now() + $2 * interval '1 minute',"
            " st.id, now() + $2 * interval '1 minute',"
            " CASE WHEN st.code IN ('pending', 'queued') THEN NULL ELSE now() END,"
            " CASE WHEN st.is_terminal THEN now() + $2 * interval '1 minute' END,"
            " CASE WHEN st.code = 'failed' THEN 'boom ' || $2 END "
            "FROM schedules s, execution_statuses st WHERE s.name = $3 AND st.code = $4",
            execution_id,
            first_minute + i * minutes_apart,
            schedule,
            code,
        )
    return ids
