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


class _KeyNotFound(NotFoundError):
    """Nothing is known by `key`; the subclass's `line` says what and where to look."""

    line = "{key!r} not found"

    def __init__(self, key: object) -> None:
        super().__init__(self.line.format(key=key))
        self.key = key


class ScheduleNotFound(_KeyNotFound):
    line = "no schedule named {key!r}: see `scheduler schedules list`"


class ExecutionNotFound(_KeyNotFound):
    line = "no execution {key}: see `scheduler history`"


class NotAnExecutionId(_KeyNotFound):
    """A value that cannot be an execution id (not a UUID): nothing can be found by it."""

    line = "{key!r} is not an execution id (a UUID)"


class UserNotFound(_KeyNotFound):
    line = "no user named {key!r}: see `scheduler web users list`"


class AlertRuleNotFound(_KeyNotFound):
    line = "no alert rule named {key!r}: see `scheduler alerts list`"


class DuplicateError(SchedulerError):
    """A schedule name that is already taken."""


class DatabaseUnreachable(SchedulerError):
    """The database cannot be reached right now (down, restarting, connection lost), as
    opposed to a statement that is wrong. The cause is chained."""


class ConflictError(SchedulerError):
    """An action the object's current state does not allow (e.g. retrying a run that has
    not failed)."""


class MigrationError(SchedulerError):
    """A schema change that cannot go on as the database stands (the line says what to do)."""


class MigrationStopped(MigrationError):
    """An online move stopped on request (SIGTERM, Ctrl-C) between two of its transactions."""
