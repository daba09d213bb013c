"""`scheduler metrics`: the database's series on their own port; `metrics monitor`."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from scheduler.cli.common import run_db


@click.group("metrics", invoke_without_command=True)
@click.option("--port", type=click.IntRange(0, 65535), help="Serve /metrics, /livez, /readyz.")
@click.option("--host", help="Interface (default SCHEDULER_HTTP_HOST, 127.0.0.1).")
@click.pass_context
def metrics_(ctx: click.Context, port: int | None, host: str | None) -> None:
    """Serve the metrics read from the database: the outbox and `monitored` schedules.

    The beat and the workers serve their own (`--http-port`); this process serves what only
    the database knows, for a setup without a dashboard. Runs until SIGTERM or Ctrl-C.
    """
    if ctx.invoked_subcommand is not None:
        return
    if port is None:
        raise click.UsageError("give --port N (or a subcommand, see --help)")
    import os

    from config.settings import get_settings
    from scheduler.cli.processes import prepare
    from scheduler.observability import database_series, health, metrics
    from scheduler.observability.alerts import Observer
    from scheduler.runtime.db import get_runtime

    if host:
        os.environ["SCHEDULER_HTTP_HOST"] = host
    prepare(upgrade=False)
    from config.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    runtime = get_runtime()
    metrics.enable()
    database_series.database_metrics()
    observer = Observer(runtime.loop, runtime.sessions, settings, deliver=False).start()
    server = health.serve(port, settings=settings)
    click.echo(f"serving /metrics, /livez, /readyz on {settings.http_host}:{server.port}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop()
    observer.stop()
    runtime.close()


@metrics_.command("monitor")
@click.argument("glob")
@click.option("--off", is_flag=True, help="Stop monitoring them.")
def monitor(glob: str, off: bool) -> None:
    """Give the schedules matching GLOB their own series (or take them away with --off)."""
    from scheduler.observability.alerts import glob_regex

    async def mark() -> list[str]:
        from scheduler.runtime.db import get_runtime
        from scheduler.store.monitoring import MonitoringStore

        async with get_runtime().session() as session, session.begin():
            return await MonitoringStore.set_monitored(session, glob_regex(glob), not off)

    names = run_db(mark)
    if not names:
        from scheduler.core.exceptions import NotFoundError

        raise NotFoundError(f"no schedule matches {glob!r}: see `scheduler schedules list`")
    click.echo(f"{len(names)} schedules {'no longer ' if off else ''}monitored")
