"""`scheduler history`, `show`, `stats`, `prune`: what actually ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.progress import Progress
from rich.table import Table

from scheduler import api
from scheduler.cli.common import json_option, print_json, run_db
from scheduler.cli.format import console, data, local_time, status_text
from scheduler.core.bounds import plain
from scheduler.core.definitions import parse_duration, parse_instant
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError

STATUS_CODES = [s.value for s in ExecutionStatus]


def parse_since(text: str | None) -> datetime | None:
    """`1h`, `30m`, `7d` (ago) or an ISO time."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=float(parse_duration(text)))
    except InvalidScheduleError:
        return parse_instant(text)


@click.command()
@click.option("--schedule", "-s", help="Only runs of this schedule.")
@click.option("--task", "-t", help="Only runs of this task.")
@click.option("--status", type=click.Choice(STATUS_CODES), help="Only runs with this status.")
@click.option("--since", help="Runs created after: 1h, 30m, 7d or an ISO time.")
@click.option("--until", help="Runs created before: a duration ago or an ISO time.")
@click.option("--limit", "-n", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--root", help="Only the runs of this run's tree (an execution id).")
@json_option
def history(
    schedule: str | None,
    task: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    root: str | None,
    as_json: bool,
) -> None:
    """Runs, newest first: status, duration, attempt, first line of the error.

    \b
    scheduler history --schedule nightly --limit 20
    scheduler history --status failed --since 24h --json
    scheduler history --root 6f1c...   (a run and the chain/group steps it started)
    """
    rows = api.history(
        schedule=schedule,
        task=task,
        status=status,
        since=parse_since(since),
        until=parse_since(until),
        limit=limit,
        root=root,
    )
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, header_style="bold")
    for column in ("CREATED", "SCHEDULE", "TASK", "TRIGGER", "STATUS", "MS", "TRY", "ERROR", "ID"):
        table.add_column(column, overflow="fold")
    for r in rows:
        error = (r["error_message"] or "").splitlines()[0][:60] if r["error_message"] else ""
        table.add_row(
            local_time(r["created_at"]),
            data(r["schedule"] or "-"),
            data(r["task"]),
            data(r["trigger"]),
            status_text(r["status"]),
            "-" if r["duration_ms"] is None else str(r["duration_ms"]),
            str(r["attempt"]),
            data(error),
            str(r["id"]),
        )
    console().print(table)


@click.command("show")
@click.argument("execution_id")
@json_option
def show_execution(execution_id: str, as_json: bool) -> None:
    """Everything about one run, including its traceback and progress."""
    row = api.get_execution(execution_id)
    if as_json:
        print_json(row)
        return
    out = console()
    tree = row.pop("tree", [])
    row.pop("children", None)
    for key, value in row.items():
        if key == "status":
            out.print(f"{key:>15}: {status_text(value)}")
        elif key != "traceback":
            shown = plain(value) if value is not None else "-"
            out.print(f"{key:>15}: {shown}", markup=False)
    if row.get("traceback"):
        out.print("traceback:", markup=False)
        out.print(plain(row["traceback"]), markup=False)
    if len(tree) > 1:
        out.print("[bold]run tree[/bold]")
        for line in tree_lines(tree, row["id"]):
            out.print(line)


def tree_lines(nodes: list[dict[str, Any]], current: Any = None) -> list[str]:
    """A run tree as indented lines: task, status, duration, id (`*` marks `current`); a
    node whose parent is not in the tree hangs under the root."""
    ids = {node["id"] for node in nodes}
    children: dict[Any, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for node in nodes:
        parent = node.get("parent_id")
        if parent in ids and parent != node["id"]:
            children.setdefault(parent, []).append(node)
        else:
            roots.append(node)
    if len(roots) > 1:
        first, rest = roots[0], roots[1:]
        children.setdefault(first["id"], []).extend(rest)
        roots = [first]
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int, seen: set[Any]) -> None:
        if node["id"] in seen:
            return
        seen.add(node["id"])
        ms = "-" if node.get("duration_ms") is None else f"{node['duration_ms']} ms"
        mark = "*" if node["id"] == current else " "
        lines.append(
            f"{mark} {'  ' * depth}{data(node['task'])}  {status_text(node['status'])}  {ms}  {node['id']}"
        )
        for child in children.get(node["id"], []):
            walk(child, depth + 1, seen)

    seen: set[Any] = set()
    for node in roots:
        walk(node, 0, seen)
    return lines


@click.command()
@click.option("--since", default="24h", show_default=True, help="Window: 1h, 7d or an ISO time.")
@click.option("--schedule", "-s", help="Only this schedule.")
@json_option
def stats(since: str, schedule: str | None, as_json: bool) -> None:
    """Per schedule: runs, success rate, p50/p95/max duration, last failure, missed/skipped/lost."""
    rows = api.stats(since=parse_since(since), schedule=schedule)
    for r in rows:
        finished = r["runs"] - r["active"]
        r["success_rate"] = round(r["success"] / finished, 4) if finished else None
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, header_style="bold")
    columns = ("SCHEDULE", "RUNS", "OK %", "P50 MS", "P95 MS", "MAX MS", "FAILED", "MISSED",
               "SKIPPED", "LOST", "LAST FAILURE")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in rows:
        rate = "-" if r["success_rate"] is None else f"{r['success_rate'] * 100:.1f}"
        table.add_row(
            data(r["schedule"]),
            str(r["runs"]),
            rate,
            _ms(r["p50_ms"]),
            _ms(r["p95_ms"]),
            _ms(r["max_ms"]),
            str(r["failed"] + r["timeout"]),
            str(r["missed"]),
            str(r["skipped"]),
            str(r["lost"]),
            local_time(r["last_failure_at"]),
        )
    console().print(table)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}"


@click.command()
@click.option(
    "--older-than",
    help="One age for every finished run (30d, 12h, ...); default: the retention settings"
    " per outcome and per schedule.",
)
@click.option(
    "--keep-last",
    type=click.IntRange(0),
    default=0,
    help="Keep each schedule's newest N (with --older-than).",
)
@click.option("--batch", type=click.IntRange(1, 100_000), default=5000, show_default=True)
@json_option
def prune(older_than: str | None, keep_last: int, batch: int, as_json: bool) -> None:
    """Remove finished runs past their retention: whole partitions first, then partitions
    mostly past it are rewritten with their kept runs, then the rest goes in batches (one
    transaction each). Runs not yet finished are never removed.

    Without --older-than: success runs after SCHEDULER_RETENTION_SUCCESS (14d), failed,
    timed-out, lost and revoked ones after SCHEDULER_RETENTION_FAILURE (90d), skipped and
    missed ones after SCHEDULER_RETENTION_SKIPPED (7d); a schedule's
    options.retention_days overrides them ({"success": 30}).

    \b
    scheduler prune
    scheduler prune --older-than 30d --keep-last 100
    """
    from config.settings import get_settings
    from scheduler.beat import upkeep
    from scheduler.core.retention import Policy
    from scheduler.runtime.db import get_runtime

    if keep_last and older_than is None:
        raise click.UsageError("--keep-last needs --older-than")
    try:
        policy = (
            Policy.from_settings(get_settings())
            if older_than is None
            else Policy.older_than(timedelta(seconds=float(parse_duration(older_than))))
        )
    except InvalidScheduleError as exc:
        raise click.BadParameter(str(exc)) from None
    now = datetime.now(UTC)
    with Progress(disable=as_json, transient=True) as progress:
        bar = progress.add_task("pruning", total=None)
        report = run_db(
            lambda: upkeep.prune(
                get_runtime().sessions,
                policy,
                now,
                batch=batch,
                keep_last=keep_last,
                on_batch=lambda n: progress.update(bar, advance=n),
            )
        )
    cutoff = now - policy.ages["success"] if policy.single else None
    ages = {name: f"{age / timedelta(days=1):g}d" for name, age in policy.ages.items()}
    if as_json:
        print_json(
            {
                "deleted": report.deleted,
                "older_than": cutoff,
                "retention": ages,
                "dropped_partitions": report.dropped,
                "dropped_runs_estimate": report.dropped_rows,
                "compacted_partitions": report.compacted,
            }
        )
        return
    if report.dropped:
        click.echo(
            f"dropped {len(report.dropped)} partitions ({', '.join(report.dropped)}):"
            f" about {report.dropped_rows} runs"
        )
    if report.compacted:
        click.echo(
            f"rewrote {len(report.compacted)} partitions with only their kept runs"
            f" ({', '.join(report.compacted)})"
        )
    if cutoff is not None:
        click.echo(f"deleted {report.deleted} runs created before {cutoff.isoformat()}")
    else:
        kept = ", ".join(f"{name} {age}" for name, age in ages.items())
        click.echo(f"deleted {report.deleted} runs past their retention ({kept})")
