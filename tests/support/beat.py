"""A dispatcher (the beat's engine) on a test's engine, with the tasks the tests register."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings
from scheduler.beat.dispatcher import Dispatcher
from scheduler.broker.publisher import Publisher
from scheduler.runtime.db import session_factory

REGISTERED = frozenset({"demo.noop", "demo.sleep"})


def build_dispatcher(
    engine: AsyncEngine,
    publisher: Publisher,
    registered: frozenset[str] = REGISTERED,
    **settings: Any,
) -> Dispatcher:
    """A dispatcher on `settings` over the defaults (no `.env` read)."""
    return Dispatcher(
        sessions=session_factory(engine),
        publisher=publisher,
        registered=registered,
        settings=Settings(_env_file=None, **settings),  # type: ignore[call-arg]
    )
