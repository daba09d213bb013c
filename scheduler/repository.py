"""Public import path of the seed-compatible repository.

`await SchedulerRepository().get_execution_status_by_code(session, "success")` and
`await SchedulerRepository().update_execution(session, execution_id, {...})` work as they did,
called on the class or on an instance. The project's own code calls the stores of
`scheduler.store` instead; this class only keeps the seed's names.
"""

from __future__ import annotations

from scheduler.store.runs import RunStore

__all__ = ["SchedulerRepository"]


class SchedulerRepository:
    """The seed's data access names, each the `RunStore` method of the same name."""

    get_execution_status_by_code = staticmethod(RunStore.get_execution_status_by_code)
    list_execution_statuses = staticmethod(RunStore.list_execution_statuses)
    get_execution = staticmethod(RunStore.get_execution)
    update_execution = staticmethod(RunStore.update_execution)
