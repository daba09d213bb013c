"""Public import path of the seed-compatible repository: `SchedulerRepository`.

The SQL lives in `scheduler.store`; this module only re-exports it.
"""

from scheduler.store.repository import SchedulerRepository

__all__ = ["SchedulerRepository"]
