"""The beat: `scheduler.beat:DatabaseScheduler` (the Celery glue) and the engine behind it.

The glue is loaded on first use, so importing a module of this package (the publisher, say,
from a worker) does not pull in the whole beat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.beat.celery_scheduler import DatabaseScheduler

__all__ = ["DatabaseScheduler"]


def __getattr__(name: str) -> Any:
    if name == "DatabaseScheduler":
        from scheduler.beat.celery_scheduler import DatabaseScheduler

        return DatabaseScheduler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
