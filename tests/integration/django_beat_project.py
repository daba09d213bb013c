"""A minimal Django project with django-celery-beat: `python -m tests.integration.django_beat_project
URL` runs Django's own migrations into the PostgreSQL database at URL and creates entries with
django-celery-beat's ORM, as a Django user would (for `scheduler import django-celery-beat`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit


def configure(url: str) -> None:
    import django
    from django.conf import settings

    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    socket_dir = parse_qs(parts.query).get("host", [None])[0]  # an embedded server's socket
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/"),
                "USER": parts.username or "postgres",
                "PASSWORD": parts.password or "",
                "HOST": socket_dir or parts.hostname or "127.0.0.1",
                "PORT": parts.port or 5432,
            }
        },
        INSTALLED_APPS=["django_celery_beat"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def populate() -> None:
    from django.core.management import call_command
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    call_command("migrate", verbosity=0)
    first_monday = CrontabSchedule.objects.create(
        minute="0", hour="9", day_of_month="1-7", day_of_week="mon", timezone="Europe/Berlin"
    )
    nightly = CrontabSchedule.objects.create(
        minute="0", hour="4", day_of_month="*", day_of_week="*", timezone="America/New_York"
    )
    ten = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    clocked = ClockedSchedule.objects.create(clocked_time=datetime(2030, 1, 1, tzinfo=UTC))
    solar = SolarSchedule.objects.create(event="sunset", latitude=52.5, longitude=13.4)
    PeriodicTask.objects.create(
        name="first-monday",
        task="demo.noop",
        crontab=first_monday,
        queue="slow",
        exchange="reports",
        routing_key="reports.monthly",
        headers='{"tenant": "acme", "id": "not-yours", "retries": 3}',
        expire_seconds=300,
        description="from django",
    )
    PeriodicTask.objects.create(name="nightly", task="demo.noop", crontab=nightly)
    PeriodicTask.objects.create(
        name="ten-minutes", task="demo.sleep", interval=ten, args="[0.5]", enabled=False, priority=5
    )
    PeriodicTask.objects.create(name="new-year", task="demo.noop", clocked=clocked, one_off=True)
    PeriodicTask.objects.create(name="sunset", task="demo.noop", solar=solar)
    PeriodicTask.objects.create(name="broken-json", task="demo.noop", interval=ten, args="[oops")
    PeriodicTask.objects.create(
        name="celery.backend_cleanup", task="celery.backend_cleanup", crontab=nightly
    )


if __name__ == "__main__":
    configure(sys.argv[1])
    populate()
