"""The Celery app: `config.celery:app`.

JSON only, UTC, acks on receipt by default (a task opts into `acks_late` itself).
Prefetch: the default multiplier (4) suits short tasks; for a queue of long tasks run its
worker with `--prefetch-multiplier 1` (or `SCHEDULER_WORKER_PREFETCH=1`) so one slow task does not
hold others back. Every module in the `tasks` package is imported by workers and beats.
"""

from __future__ import annotations

import pkgutil

from celery import Celery

import tasks
from config.logging import configure_logging
from config.settings import get_settings
from scheduler.observability.health import install_worker_hooks
from scheduler.runtime.urls import broker_transport_options, redact, resolve_broker_url
from scheduler.worker.signals import connect_signals

settings = get_settings()
configure_logging(settings.log_level)

TASK_MODULES = sorted(f"tasks.{m.name}" for m in pkgutil.iter_modules(tasks.__path__))

app = Celery("scheduler", include=TASK_MODULES)
# The broker URL is resolved when the app first needs it, not at import: without BROKER_URL
# that starts the embedded Redis, which importing a module must never do.
app.add_defaults(
    lambda: {
        "broker_url": resolve_broker_url(settings),
        "broker_transport_options": broker_transport_options(settings),
    }
)
app.conf.update(
    result_backend=settings.result_backend,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_protocol=2,
    task_default_delivery_mode=settings.broker_delivery_mode,
    timezone="UTC",
    enable_utc=True,
    task_acks_late=False,
    task_reject_on_worker_lost=False,
    task_ignore_result=settings.result_backend is None,
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_scheduler="scheduler.beat:DatabaseScheduler",
    worker_consumer="scheduler.worker.guard:GuardedConsumer",
    beat_max_loop_interval=settings.beat_max_sleep_s,
)
install_worker_hooks()
connect_signals()


def describe() -> str:
    """The broker this app talks to, safe to print."""
    return redact(str(app.conf.broker_url))
