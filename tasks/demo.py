"""Demo tasks (public names), used by the README, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from config.celery import app
from scheduler.tracking import TrackedTask, tracked_task


@tracked_task(name="demo.noop", app=app)
def noop() -> None:
    """Does nothing: the cost of a tracked run."""


@tracked_task(name="demo.sleep", app=app)
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@tracked_task(name="demo.fail", app=app)
def fail(message: str = "demo failure") -> None:
    raise RuntimeError(message)


@tracked_task(name="demo.flaky", app=app, bind=True, max_retries=5, default_retry_delay=0.2)
def flaky(self: TrackedTask, fail_times: int = 1) -> int:
    """Fails `fail_times` attempts, then succeeds; each retry is recorded."""
    retries = int(self.request.retries)
    if retries < fail_times:
        raise self.retry(exc=RuntimeError(f"flaky failure {retries + 1} of {fail_times}"))
    return retries + 1


@tracked_task(name="demo.progress", app=app, bind=True)
def progress(self: TrackedTask, steps: int = 10, step_s: float = 0.1) -> int:
    for i in range(1, steps + 1):
        time.sleep(step_s)
        self.update_progress(i, steps)
    return steps


@tracked_task(name="demo.async_noop", app=app)
async def async_noop(**_: Any) -> None:
    await asyncio.sleep(0)
