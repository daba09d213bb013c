"""One retry policy: what "unreachable" means, how long to back off, how to try again.

Only an unreachable database or broker (down, restarting, connection lost) is worth trying
again, and a lock not had in time (`lock_timeout`, a deadlock: the holder will be done soon);
a wrong statement or a refused value fails the same way every time, so it is raised at once.
Database errors are told apart by SQLSTATE. Every retry in the project is bounded (a number
of attempts, a capped wait).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc

from scheduler.core.exceptions import DatabaseUnreachable

T = TypeVar("T")

UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnreachable,
    OSError,  # ConnectionError and TimeoutError among them
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InterfaceError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # the pool's own: no connection could be had in time
)
"""What "the database or broker cannot be reached right now" looks like, at any depth."""


def unreachable(exc: BaseException) -> bool:
    """True when `exc`, or an error it wraps (SQLAlchemy wraps asyncpg's "the database system
    is starting up" in a plain DBAPIError) or was caused by, says the database or broker
    cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UNREACHABLE_ERRORS):
            return True
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return False


def error_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, what it wraps (SQLAlchemy's `orig`) and what caused it, outermost first."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending and len(found) < 10:
        item = pending.pop(0)
        if item is None or any(item is seen for seen in found):
            continue
        found.append(item)
        orig = getattr(item, "orig", None)
        pending.extend([orig if isinstance(orig, BaseException) else None, item.__cause__])
    return found


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the PostgreSQL error behind `exc`, if there is one."""
    for item in error_chain(exc):
        state = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None


LOCK_STATES = frozenset({"55P03", "40P01"})
"""lock_not_available (`lock_timeout` ran out) and deadlock_detected."""


def lock_unavailable(exc: BaseException) -> bool:
    """True when `exc` says a lock could not be had in time (or the deadlock detector chose
    this transaction): the same transaction can be tried again once the holder is done."""
    return sqlstate(exc) in LOCK_STATES


_MAX_DOUBLINGS = 64
"""Past this many doublings any wait is over every cap in use: no float overflow."""


def backoff_s(failures: int, cap_s: float, first_s: float = 1.0) -> float:
    """Wait after `failures` failed tries in a row: `first_s`, twice that, four times ...,
    never more than `cap_s` (0 or fewer failures wait `first_s`)."""
    doublings = min(max(0, failures - 1), _MAX_DOUBLINGS)
    return float(min(cap_s, first_s * 2**doublings))


async def retry_unreachable(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    wait_s: float = 0.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`call()`, tried up to `attempts` times while it fails `unreachable`, `wait_s` apart.

    Any other error, and the last attempt's error, is raised as it is; `on_retry` sees each
    error that is tried again (to log it)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt >= attempts or not unreachable(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            if wait_s > 0:
                await asyncio.sleep(wait_s)
    raise ValueError(f"attempts must be at least 1, not {attempts}")
