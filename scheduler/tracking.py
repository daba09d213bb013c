"""Public import path of the tracked task: `from scheduler.tracking import tracked_task`.

The code lives in `scheduler.worker.tracked`; this module only re-exports it.
"""

from scheduler.worker.tracked import TrackedTask, tracked_task

__all__ = ["TrackedTask", "tracked_task"]
