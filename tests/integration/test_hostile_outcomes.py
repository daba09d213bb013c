"""Outcomes whatever their text holds, and claims that must match their run (real
PostgreSQL, eager tracked calls)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from scheduler.core.bounds import SANITISED_MARK
from scheduler.core.domain import ExecutionStatus
from tests.support.hostile_tasks import echo, other, raise_, ran
from tests.support.rows import execution, insert

pytestmark = pytest.mark.usefixtures("database_url")
HOSTILE = ["nul\x00byte", "lone \ud800 surrogate", "\x1b[31mred\x1b[0m [bold]x[/]"]


@pytest.mark.parametrize("text", HOSTILE)
def test_results_and_errors_are_stored_whatever_they_hold(text: str) -> None:
    done = execution(echo.apply(kwargs={"text": text}).id)
    assert done["status"] == "success"
    failed = execution(raise_.apply(kwargs={"text": text}).id)
    assert failed["status"] == "failed"
    if "\x00" in text or "\ud800" in text:
        assert str(done["result_summary"]).endswith(SANITISED_MARK)
        assert str(failed["error_message"]).endswith(SANITISED_MARK)
        assert "\ufffd" in str(done["kwargs"])
    else:
        assert done["result_summary"] == text
        assert failed["error_message"] == text


def test_a_claim_for_another_task_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    ran.clear()
    execution_id = insert(ExecutionStatus.QUEUED, task="tests.hostile.echo")
    with caplog.at_level(logging.ERROR, logger="scheduler.worker.tracked"):
        other.apply(task_id=execution_id)
    assert ran == []
    assert "delivery refused" in caplog.text
    row: dict[str, Any] = execution(execution_id)
    assert (row["status"], row["task"], row["attempt"]) == ("queued", "tests.hostile.echo", 0)
    echo.apply(kwargs={"text": "real"}, task_id=execution_id)
    assert ran == ["echo"]
    assert execution(execution_id)["status"] == "success"
