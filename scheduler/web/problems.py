"""What an error looks like to a caller: `HTTPProblem` (a status and a one-line message) and
`problem_for`, which turns any exception into one, never showing a DSN, secret or traceback
(those go to the log)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from scheduler.core.exceptions import (
    ConflictError,
    DuplicateError,
    InvalidScheduleError,
    NotFoundError,
    SchedulerError,
)
from scheduler.runtime.retry import unreachable
from scheduler.runtime.urls import redact

log = logging.getLogger(__name__)


class HTTPProblem(Exception):
    """An error answered with `status` and a one-line `message` (JSON for the API)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def problem_for(exc: BaseException) -> HTTPProblem:
    """The status and one-line message of an error; never a DSN, secret or traceback."""
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, NotFoundError):
        return HTTPProblem(404, str(exc))
    if isinstance(exc, DuplicateError | ConflictError):
        return HTTPProblem(409, str(exc))
    if isinstance(exc, InvalidScheduleError):
        return HTTPProblem(400, str(exc))
    if unreachable(exc):
        return HTTPProblem(503, "the database or broker cannot be reached right now")
    if isinstance(exc, SchedulerError):
        return HTTPProblem(400, redact(str(exc)).splitlines()[0])
    if isinstance(exc, DBAPIError):
        name = type(exc.orig).__name__ if exc.orig is not None else ""
        if "DataError" in name or "Integrity" in name or "Invalid" in name or "Numeric" in name:
            return HTTPProblem(
                400, "the database refused a value: check the field types and ranges"
            )
        log.warning(
            "database error: %s", redact(str(exc.orig)).splitlines()[0] if exc.orig else name
        )
        return HTTPProblem(503, "the database refused the request: see the server log")
    log.exception("unexpected error", exc_info=exc)
    return HTTPProblem(500, "internal error: see the server log")
