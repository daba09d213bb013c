"""The task names the project's Celery app registers: what a schedule's `task` is checked
against before it is stored (the beat flags a row whose task is unknown all the same)."""

from __future__ import annotations


def registered_tasks() -> frozenset[str]:
    """Task names the project's Celery app registers (its task modules imported)."""
    from config.celery import app

    app.loader.import_default_modules()
    return frozenset(name for name in app.tasks if not name.startswith("celery."))
