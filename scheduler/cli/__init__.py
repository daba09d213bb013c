"""The `scheduler` command. Each verb lives in its own module and is registered here."""

from __future__ import annotations

import click

from scheduler.cli.alerts_cmd import alerts
from scheduler.cli.apply_cmd import apply, export
from scheduler.cli.common import FriendlyGroup
from scheduler.cli.history_cmd import history, prune, show_execution, stats
from scheduler.cli.import_cmd import import_
from scheduler.cli.metrics_cmd import metrics_
from scheduler.cli.misc_cmd import next_, reap, tasks
from scheduler.cli.partitions_cmd import partitions_
from scheduler.cli.processes import beat, run, worker
from scheduler.cli.schedules_cmd import schedules
from scheduler.cli.services_cmd import db, services
from scheduler.cli.web_cmd import audit, web


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="celery-db-scheduler", prog_name="scheduler")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """A database-driven cron scheduler for Celery.

    Schedules live in PostgreSQL rows; beats dispatch them exactly once; workers record
    every run. Without DATABASE_URL / BROKER_URL, embedded PostgreSQL and Redis are used
    (data under .scheduler/).

    \b
    First look:      scheduler run
    Add a schedule:  scheduler schedules add nightly --task demo.noop --cron "0 3 * * *"
    History:         scheduler history --limit 20
    Dashboard:       scheduler web
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _configure_cli_logging()


def _configure_cli_logging() -> None:
    """Warnings and errors of the commands, as text or JSON (`SCHEDULER_LOG_FORMAT`); the
    beat and the worker raise the level to their `--loglevel`."""
    from config.logging import configure_logging

    configure_logging("WARNING")


main.add_command(services)
main.add_command(db)
main.add_command(run)
main.add_command(beat)
main.add_command(worker)
for command in (
    schedules,
    apply,
    export,
    import_,
    next_,
    history,
    show_execution,
    stats,
    prune,
    tasks,
    reap,
    alerts,
    metrics_,
    partitions_,
    web,
    audit,
):
    main.add_command(command)
