"""Demo tasks named by DESIGN.md, used by the README, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from config.celery import app


@app.task(name="demo.noop")
def noop(**_: Any) -> None:
    return None


@app.task(name="demo.sleep")
def sleep(seconds: float, **_: Any) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="demo.fail")
def fail(message: str = "demo failure", **_: Any) -> None:
    raise RuntimeError(message)


@app.task(name="demo.flaky", bind=True, max_retries=5, default_retry_delay=0)
def flaky(self: Any, fail_times: int = 1, **_: Any) -> int:
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError(f"flaky failure {self.request.retries + 1}"))
    return int(self.request.retries)


@app.task(name="demo.progress", bind=True)
def progress(self: Any, steps: int = 10, **_: Any) -> int:
    for i in range(1, steps + 1):
        time.sleep(0.05)
        self.update_state(state="PROGRESS", meta={"current": i, "total": steps})
    return steps


@app.task(name="demo.async_noop")
def async_noop(**_: Any) -> None:
    async def body() -> None:
        await asyncio.sleep(0)

    asyncio.run(body())
