"""Tracked tasks whose outcome text is whatever they are given (for hostile-input tests)."""

from __future__ import annotations

from config.celery import app
from scheduler.tracking import tracked_task

ran: list[str] = []


@tracked_task(name="tests.hostile.echo", app=app, shared=False)
def echo(text: str) -> str:
    ran.append("echo")
    return text


@tracked_task(name="tests.hostile.raise_", app=app, shared=False)
def raise_(text: str) -> None:
    raise RuntimeError(text)


@tracked_task(name="tests.hostile.other", app=app, shared=False)
def other() -> None:
    ran.append("other")
