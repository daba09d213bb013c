"""Loaded with `-I` by a test: a consumer step that fails at start, as an unrecoverable
error in the consumer does."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from config.celery import app


class CrashOnStart(bootsteps.StartStopStep):  # type: ignore[misc]
    def start(self, parent: Any) -> None:
        raise RuntimeError("consumer step failed on purpose")


app.steps["consumer"].add(CrashOnStart)
