"""The project's app with a static beat_schedule (as teams coming from celery beat keep it):
the beat syncs it into `schedules` at start. Used by the clock tests."""

from __future__ import annotations

from datetime import timedelta

from config.celery import app

app.conf.beat_schedule = {
    "clock-every-second": {"task": "demo.noop", "schedule": timedelta(seconds=1)},
}

__all__ = ["app"]
