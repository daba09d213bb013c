"""`scheduler partitions maintain|list`: the partitions of `executions`."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from scheduler import api
from scheduler.cli.common import json_option, print_json
from scheduler.cli.format import console


@click.group("partitions")
def partitions_() -> None:
    """The partitions of `executions` (one a day or a week, by run time).

    Any beat creates them ahead and drops those wholly past retention, every
    SCHEDULER_PARTITION_MAINTAIN_S (1 h) and at start; these commands do the same by hand.
    """


@partitions_.command("maintain")
@click.option("--no-drop", is_flag=True, help="Only create the partitions ahead.")
@json_option
def maintain(no_drop: bool, as_json: bool) -> None:
    """Create the partitions up to SCHEDULER_PARTITION_AHEAD_DAYS (7) ahead; drop the
    partitions whose every run is finished and past its retention (see `scheduler prune`).

    Waits for a beat that is doing the same; safe to run from cron on any host.
    """
    report = api.maintain_partitions(drop=not no_drop, now=datetime.now(UTC))
    if as_json:
        print_json(
            {
                "interval": report.interval.value,
                "created": report.created,
                "dropped": report.dropped,
            }
        )
        return
    click.echo(
        f"{report.interval.value} partitions: created {len(report.created)}"
        f"{' (' + ', '.join(report.created) + ')' if report.created else ''},"
        f" dropped {len(report.dropped)}"
        f"{' (' + ', '.join(report.dropped) + ')' if report.dropped else ''}"
    )


@partitions_.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Each partition: its name, its time range (UTC), its rows (the planner's estimate) and
    its size with indexes. `executions_default` holds the ids outside every range."""
    rows = api.list_partitions()
    if as_json:
        print_json(
            [
                {
                    "name": p.name,
                    "start": p.start,
                    "end": p.end,
                    "rows_estimate": p.rows_estimate,
                    "total_bytes": p.total_bytes,
                }
                for p in rows
            ]
        )
        return
    table = Table("partition", "from (UTC)", "to (UTC)", "rows (est.)", "size")
    for p in rows:
        table.add_row(
            p.name,
            "-" if p.start is None else f"{p.start:%Y-%m-%d %H:%M}",
            "-" if p.end is None else f"{p.end:%Y-%m-%d %H:%M}",
            str(p.rows_estimate),
            f"{p.total_bytes / 1_048_576:.1f} MB",
        )
    console().print(table)
