"""`scheduler alerts add|list|remove|test`: notification rules and their deliveries."""

from __future__ import annotations

from typing import Any

import click

from config.settings import get_settings
from scheduler.cli.common import fail, json_option, print_json, run_db
from scheduler.core.exceptions import AlertRuleNotFound


@click.group("alerts")
def alerts() -> None:
    """Alert rules: page a webhook (or run a task) when schedules go wrong.

    \b
    Events: failed, timeout, lost, missed, late (dispatched more than --late-after-s after
    its slot), stale (no success within --stale-after-s), recovered (first success after a
    failure), paused (disabled by hand). The beats send the deliveries, retried until the
    receiver answers 2xx, each at most once per rule, event and run.
    """


@alerts.command("add")
@click.argument("name")
@click.option("--schedules", "glob", default="*", show_default=True, help="Schedule names (glob).")
@click.option("--events", required=True, help="Comma-separated: failed,timeout,lost,missed,...")
@click.option("--webhook", help="POST a signed JSON body to this URL.")
@click.option("--task", help="Or send this registered task, with the body as kwarg `event`.")
@click.option("--secret", help="HMAC-SHA256 key of the X-Scheduler-Signature header.")
@click.option("--late-after-s", type=int, help="`late`: seconds after the slot.")
@click.option("--stale-after-s", type=int, help="`stale`: seconds without a success.")
@click.option(
    "--only-final-attempt",
    is_flag=True,
    help="`failed` only when no retry follows (a run that will retry pages nobody).",
)
@json_option
def add(
    name: str,
    glob: str,
    events: str,
    webhook: str | None,
    task: str | None,
    secret: str | None,
    late_after_s: int | None,
    stale_after_s: int | None,
    only_final_attempt: bool,
    as_json: bool,
) -> None:
    """Add rule NAME."""
    from scheduler.observability.alerts import parse_events, rule_values

    values = rule_values(
        name=name,
        schedules=glob,
        events=parse_events(events),
        webhook=webhook,
        task=task,
        secret=secret,
        late_after_s=late_after_s,
        stale_after_s=stale_after_s,
        only_final_attempt=only_final_attempt,
    )

    async def insert() -> int:
        from scheduler.runtime.db import get_runtime
        from scheduler.store.alerts import AlertStore

        async with get_runtime().session() as session, session.begin():
            return await AlertStore.insert_rule(session, values)

    rule_id = run_db(insert)
    if as_json:
        print_json({"id": rule_id, **{k: v for k, v in values.items() if k != "secret"}})
    else:
        click.echo(f"alert rule {name!r} added: {','.join(values['events'])} on {glob!r}")


@alerts.command("list")
@click.option("--deliveries", "show_deliveries", is_flag=True, help="List recent deliveries.")
@json_option
def list_(show_deliveries: bool, as_json: bool) -> None:
    """List rules (secrets are never shown), or recent deliveries."""

    async def read() -> list[dict[str, Any]]:
        from scheduler.runtime.db import get_runtime
        from scheduler.store.alerts import AlertStore

        async with get_runtime().session() as session:
            if show_deliveries:
                return await AlertStore.deliveries(session, limit=200)
            return await AlertStore.list_rules(session)

    rows = run_db(read)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no deliveries" if show_deliveries else "no alert rules")
        return
    for row in rows:
        if show_deliveries:
            click.echo(
                f"{row['id']}  {row['rule']:<20} {row['event']:<10} {row['status']:<8}"
                f" attempts={row['attempts']} {row['last_error'] or ''}".rstrip()
            )
        else:
            target = row["webhook_url"] or f"task {row['task']}"
            click.echo(
                f"{row['name']:<20} {row['schedules']:<20} {','.join(row['events']):<30}"
                f" -> {target}  (sent {row['sent']}, pending {row['pending']})"
            )


@alerts.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove rule NAME (and its delivery records)."""

    async def delete() -> bool:
        from scheduler.runtime.db import get_runtime
        from scheduler.store.alerts import AlertStore

        async with get_runtime().session() as session, session.begin():
            return await AlertStore.delete_rule(session, name)

    if not run_db(delete):
        raise AlertRuleNotFound(name)
    click.echo(f"alert rule {name!r} removed")


@alerts.command("test")
@click.argument("name")
def test(name: str) -> None:
    """Send a `test` event through rule NAME now and say whether it arrived."""
    from scheduler.observability.alerts import celery_send_task, send_test

    async def send() -> Any:
        from scheduler.runtime.db import get_runtime

        send_task = None
        if get_settings().broker_url is not None:
            from config.celery import app

            send_task = celery_send_task(app)
        return await send_test(get_runtime().sessions, get_settings(), name, send_task)

    result = run_db(send)
    if result is None:
        raise AlertRuleNotFound(name)
    delivery_id, outcome = result
    if not outcome.sent:
        fail(f"delivery {delivery_id} failed ({outcome.error}); the beats will retry it")
    click.echo(f"delivery {delivery_id} sent")
