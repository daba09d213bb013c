"""Property-based fuzz of `/api/v1` from its own OpenAPI document (schemathesis): on a
database with schedules and runs, no request makes the server answer 5xx."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from scheduler import api
from scheduler.core.domain import ExecutionStatus
from scheduler.web import create_app
from tests.support.procs import query


@pytest.fixture
def fuzzed(database_url: str, broker_url: str) -> tuple[Any, str]:
    api.upsert_schedule(api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *"))
    api.upsert_schedule(
        api.ScheduleDefinition(
            name="often", task="demo.noop", interval_seconds=None, cron="* * * * *"
        )
    )
    query(
        database_url,
        "INSERT INTO executions (id, schedule_id, task, args, kwargs, trigger, status_id, "
        "duration_ms, error_type, error_message) SELECT gen_random_uuid(), s.id, s.task, '[]', "
        "'{}', 'schedule', (ARRAY[$1, $2]::smallint[])[1 + g % 2], g, 'RuntimeError', 'boom' "
        "FROM schedules s, generate_series(1, 50) g",
        ExecutionStatus.SUCCESS.id,
        ExecutionStatus.FAILED.id,
    )
    token = api.create_token("fuzz", "admin")
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app()), token


def test_no_server_errors(fuzzed: tuple[Any, str]) -> None:
    """Every operation, a few generated requests each (bounded to keep the suite fast)."""
    schema, token = fuzzed
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=5,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                message = response.json()["error"]
                assert isinstance(message, str)
                assert "\n" not in message

        check()


def test_openapi_lists_the_public_endpoints(fuzzed: tuple[Any, str]) -> None:
    from scheduler.web.jsonapi.openapi import openapi_document

    paths = openapi_document("/api/v1")["paths"]
    assert set(paths) == {
        "/schedules", "/schedules/{name}", "/schedules/{name}/trigger", "/schedules/{name}/pause",
        "/schedules/{name}/resume", "/schedules/{name}/backfill", "/runs", "/runs/{id}",
        "/runs/{id}/retry", "/runs/{id}/revoke", "/stats", "/audit",
    }  # fmt: skip
    assert uuid.UUID(str(uuid.uuid4()))
