"""`call`: how a handler awaits `scheduler.api`. The API's coroutines run on the process's
runtime loop (its one engine), awaited from the server's loop, so the dashboard can be
mounted in any ASGI application without a second engine."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from scheduler.runtime.db import get_runtime

T = TypeVar("T")


async def call(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the process's runtime loop (where its engine lives)."""
    runtime = get_runtime()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, runtime.loop))
