"""What wakes the beat: NOTIFY on the schedules channel, and the alarm its main thread sleeps on.

The listener holds its own asyncpg connection (LISTEN needs one that stays open); a new
connection may have missed changes, which `ensure` reports so the caller re-checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import asyncpg

from scheduler.runtime.dsn import asyncpg_dsn
from scheduler.store.models import NOTIFY_CHANNEL


class ChangeListener:
    """LISTEN on the schedules channel; every notification calls `on_change` at once."""

    def __init__(self, url: str, on_change: Callable[[], None]) -> None:
        self.dsn = asyncpg_dsn(url)
        self.on_change = on_change
        self._connection: Any = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> bool:
        """Connect if needed; True when a new connection was made (changes may have been missed)."""
        if self.connected:
            return False
        await self.close()
        connection = await asyncpg.connect(self.dsn, timeout=5)
        await connection.add_listener(NOTIFY_CHANNEL, self._notified)
        self._connection = connection
        return True

    def _notified(self, *_: object) -> None:
        self.on_change()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)


class Wakeup:
    """A thread-safe alarm: the beat's main thread sleeps on it; NOTIFY and shutdown ring it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken early."""
        woken = self._event.wait(max(0.0, seconds))
        self._event.clear()
        return woken
