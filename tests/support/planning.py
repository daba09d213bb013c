"""A due schedule row for the planner's pure tests: one minute apart, due at `NOW`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from scheduler.core.planner import DueSchedule, PlannerSettings

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = PlannerSettings(default_grace_s=60, max_catchup=5)


def due_row(**changes: Any) -> DueSchedule:
    """Schedule `s` (demo.noop) every 60 s, due at `NOW`, with `changes` applied."""
    base = DueSchedule(
        id=1,
        name="s",
        task="demo.noop",
        cron=None,
        interval_seconds=Decimal(60),
        run_at=None,
        timezone="UTC",
        args=[],
        kwargs={},
        options={},
        start_at=None,
        end_at=None,
        max_runs=None,
        misfire_policy="run_once",
        misfire_grace_seconds=None,
        overlap_policy="allow",
        jitter_seconds=0,
        next_run_at=NOW,
        total_run_count=0,
    )
    return replace(base, **changes)
