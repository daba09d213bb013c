"""Errors the project raises on purpose. Each message is one line a person can act on."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class; `str(exc)` is the one-line message shown to users."""


class ConfigurationError(SchedulerError):
    """Bad settings: wrong URL scheme, unreachable service, missing migrations."""


class ServiceError(SchedulerError):
    """An embedded service could not be started or reached."""


class InvalidScheduleError(SchedulerError):
    """A schedule definition that cannot be run (bad cron, unknown time zone, ...)."""


class NotFoundError(SchedulerError):
    """A named schedule or an execution id that does not exist."""


class ScheduleNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}: see `scheduler schedules list`")
        self.name = name


class ExecutionNotFound(NotFoundError):
    def __init__(self, execution_id: object) -> None:
        super().__init__(f"no execution {execution_id}: see `scheduler history`")
        self.execution_id = execution_id


class NotAnExecutionId(NotFoundError):
    """A value that cannot be an execution id (not a UUID): nothing can be found by it."""

    def __init__(self, value: object) -> None:
        super().__init__(f"{value!r} is not an execution id (a UUID)")
        self.value = value


class UserNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no user named {name!r}: see `scheduler web users list`")
        self.name = name


class AlertRuleNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no alert rule named {name!r}: see `scheduler alerts list`")
        self.name = name


class DuplicateError(SchedulerError):
    """A schedule name that is already taken."""


class DatabaseUnreachable(SchedulerError):
    """The database cannot be reached right now (down, restarting, connection lost), as
    opposed to a statement that is wrong. The cause is chained."""


class ConflictError(SchedulerError):
    """An action the object's current state does not allow (e.g. retrying a run that has
    not failed)."""
