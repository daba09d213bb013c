"""The unit of work every API function runs in, and the sync form of each coroutine.

An async API function takes an optional `session`: the caller's (which the caller then
commits) or, without one, a new session committed on success. Its sync twin runs it on
the process's one event loop and engine (`Runtime.run`), so CLI code and scripts need no
loop of their own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.runtime.db import get_runtime

T = TypeVar("T")
P = ParamSpec("P")


@contextlib.asynccontextmanager
async def unit(session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
    """The caller's session as it is, or a new one committed on success."""
    if session is not None:
        yield session
        return
    async with get_runtime().sessions() as own, own.begin():
        yield own


async def within(
    session: AsyncSession | None,
    query: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`query(session, *args, **kwargs)` in `unit(session)`: a read or write of one call."""
    async with unit(session) as s:
        return await query(s, *args, **kwargs)


def blocking(coroutine_function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The sync form of `aname`, called `name`: same arguments, run on the process runtime."""

    @functools.wraps(coroutine_function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return get_runtime().run(coroutine_function(*args, **kwargs))

    call.__name__ = call.__qualname__ = coroutine_function.__name__.removeprefix("a")
    return call
