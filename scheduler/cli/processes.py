"""Long-running processes: `scheduler run` (everything, for a first look), `beat`, `worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

import click

from config.settings import get_settings
from scheduler import api
from scheduler.cli.common import run_db
from scheduler.runtime import migrate
from scheduler.runtime.urls import ServiceUrls, redact, resolve_urls

DEMO_SCHEDULES: list[dict[str, Any]] = [
    {
        "name": "demo-noop-every-5s",
        "task": "demo.noop",
        "interval_seconds": 5,
        "description": "A no-op every five seconds.",
    },
    {
        "name": "demo-progress-every-minute",
        "task": "demo.progress",
        "cron": "* * * * *",
        "kwargs": {"steps": 5},
        "description": "Reports progress in five steps, every minute.",
    },
    {
        "name": "demo-flaky-every-30s",
        "task": "demo.flaky",
        "interval_seconds": 30,
        "kwargs": {"fail_times": 1},
        "description": "Fails once, then succeeds on the retry.",
    },
    {
        "name": "demo-fail-every-2-minutes",
        "task": "demo.fail",
        "cron": "*/2 * * * *",
        "kwargs": {"message": "this demo task always fails"},
        "description": "Always fails: shows how errors are recorded.",
    },
]


POOLS = ("prefork", "threads", "solo", "gevent", "eventlet")
GREEN_POOLS = frozenset({"gevent", "eventlet"})


def prepare(*, upgrade: bool) -> ServiceUrls:
    """Resolve (or start) the services, export their URLs for child processes, check schema."""
    urls = resolve_urls()
    os.environ["DATABASE_URL"] = urls.database_url
    os.environ["BROKER_URL"] = urls.broker_url
    get_settings.cache_clear()
    if upgrade:
        run_db(lambda: migrate.upgrade(urls.database_url))
    else:
        run_db(lambda: migrate.ensure_current(urls.database_url))
    return urls


http_port_option = click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics, /livez, /readyz on this port (see docs/OBSERVABILITY.md).",
)


def _export_port(name: str, port: int | None) -> None:
    if port is not None:
        os.environ[name] = str(port)
        get_settings.cache_clear()


@click.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="Log level.")
@http_port_option
def beat(loglevel: str, http_port: int | None) -> None:
    """Run a beat: dispatches due schedules from the database.

    Any number of beats may run at once; the database makes each slot run exactly once.
    Same as `celery -A config.celery beat -S scheduler.beat:DatabaseScheduler`.
    """
    _export_port("SCHEDULER_BEAT_HTTP_PORT", http_port)
    prepare(upgrade=False)
    from config.celery import app

    app.Beat(scheduler="scheduler.beat:DatabaseScheduler", loglevel=loglevel.upper()).run()


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="Log level.")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes/threads.")
@click.option(
    "--pool",
    "-P",
    type=click.Choice(POOLS),
    default="prefork",
    show_default=True,
    help="Execution pool (see the README's pool table for the limits each one enforces).",
)
@click.option("--queues", "-Q", default=None, help="Comma-separated queues to consume.")
@http_port_option
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    loglevel: str,
    concurrency: int | None,
    pool: str,
    queues: str | None,
    http_port: int | None,
    celery_args: tuple[str, ...],
) -> None:
    """Run a worker: executes tasks and records every run.

    Extra arguments go to `celery worker` as they are. Same as `celery -A config.celery worker`.
    With `-P gevent` or `-P eventlet` the process becomes `celery worker` itself, so the
    standard library is patched before anything else is imported, as Celery requires.
    """
    _export_port("SCHEDULER_WORKER_HTTP_PORT", http_port)
    prepare(upgrade=False)
    argv = ["worker", "--loglevel", loglevel.upper(), "--pool", pool]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if queues:
        argv += ["--queues", queues]
    if pool in GREEN_POOLS:
        command = [sys.executable, "-m", "celery", "-A", "config.celery", *argv, *celery_args]
        os.execv(sys.executable, command)
    from celery.bin.celery import celery as celery_command

    from config.celery import app

    # as `app.worker_main`, but keeping the worker's exit code (1 after an unrecoverable
    # error), which Celery drops there: a crashed worker must not look like a clean stop
    celery_command.params[0].default = app
    try:
        code = celery_command.main(args=[*argv, *celery_args], standalone_mode=False)
    finally:
        celery_command.params[0].default = None
    if isinstance(code, int) and code:
        raise SystemExit(code)


@click.command()
@click.option("--no-demo", is_flag=True, help="Do not create the demo schedules.")
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--web-port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="Port of the dashboard (on 127.0.0.1).")  # fmt: skip
@click.option("--no-web", is_flag=True, help="Do not start the dashboard.")
def run(no_demo: bool, concurrency: int, loglevel: str, web_port: int, no_web: bool) -> None:
    """Everything for a first look: services, migrations, demo schedules, a beat, a worker
    and the dashboard (on 127.0.0.1; its URL is the first line printed).

    Logs go to the terminal; Ctrl-C (or SIGTERM) stops the beat and the worker cleanly.
    The embedded servers keep running for the next command; stop them with
    `scheduler services down`.
    """
    from scheduler.cli.format import dashboard_url

    if not no_web:
        click.echo(f"dashboard: {dashboard_url('127.0.0.1', web_port)}")
    urls = prepare(upgrade=True)
    click.echo(f"database: {redact(urls.database_url)}")
    click.echo(f"broker:   {redact(urls.broker_url)}")
    if not no_demo:
        created = api.create_schedules_if_absent(DEMO_SCHEDULES)
        click.echo(f"demo schedules: {created} created, {len(DEMO_SCHEDULES) - created} present")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "scheduler.cli"]
    children = [
        subprocess.Popen([*cli, "worker", "-l", loglevel, "-c", str(concurrency)], env=env),
        subprocess.Popen([*cli, "beat", "-l", loglevel], env=env),
    ]
    if not no_web:
        web = [*cli, "web", "--host", "127.0.0.1", "--port", str(web_port), "-l", "warning"]
        children.append(subprocess.Popen(web, env=env))
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        raise click.exceptions.Exit(1)
