"""A plain Celery app with a beat_schedule, as users have today (for `scheduler import celery`)."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.schedules import BaseSchedule, crontab


class FullMoon(BaseSchedule):  # type: ignore[misc]
    """A custom schedule class: it has no cron or interval equivalent."""


legacy = Celery("legacy", set_as_current=False)
legacy.conf.timezone = "Europe/Berlin"
legacy.conf.beat_schedule = {
    "office-hours": {
        "task": "demo.noop",
        "schedule": crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
    },
    "every-30s": {
        "task": "demo.sleep",
        "schedule": timedelta(seconds=30),
        "args": (0.1,),
        "options": {
            "queue": "slow",
            "expires": 60,
            "headers": {"tenant": "acme", "task": "not-yours"},
            "routing_key": "slow.work",
        },
    },
    "first-monday": {
        "task": "demo.noop",
        "schedule": crontab(minute="0", hour="9", day_of_month="1-7", day_of_week="mon"),
    },
    "plain-number": {"task": "demo.noop", "schedule": 45.0},
    "at-full-moon": {"task": "demo.noop", "schedule": FullMoon()},
    "not-registered": {"task": "legacy.gone", "schedule": 10.0},
}
