"""Schedule definitions: list, read, create or update (one or a whole file's worth),
remove; and `describe`, what a schedule does in words."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.api.audit import audit_removal, default_actor
from scheduler.api.units import blocking, unit, within
from scheduler.core.cron_describe import Description, describe_definition
from scheduler.core.cron_describe import describe as describe_timing
from scheduler.core.definitions import (
    ScheduleDefinition,
    from_row,
    normalize,
    to_mapping,
    validate,
)
from scheduler.core.exceptions import ScheduleNotFound
from scheduler.runtime.registry import registered_tasks
from scheduler.store.audit import AuditStore
from scheduler.store.schedules import ScheduleStore


class UpsertOutcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


async def areconcile(
    definitions: list[ScheduleDefinition],
    *,
    update_existing: bool = True,
    prune: bool = False,
    dry_run: bool = False,
    session: AsyncSession | None = None,
    actor: str | None = None,
) -> dict[str, list[str]]:
    """Make the stored schedules match `definitions` in one transaction (the caller validates).

    Returns the names under `create`, `update`, `unchanged`, `existing` (differs, but
    `update_existing` is off) and `delete` (only with `prune`). `dry_run` writes nothing.
    Each change is written to `audit_log` in the same transaction, by `actor` (default: the
    OS user)."""
    changes: dict[str, list[str]] = {
        "create": [], "update": [], "unchanged": [], "existing": [], "delete": []
    }  # fmt: skip
    async with unit(session) as s:
        if not dry_run:
            # two applies at once would each see the other's rows as absent: one waits
            await ScheduleStore.lock_definitions(s)
        stored = {r["name"]: r for r in await ScheduleStore.list_schedules(s)}
        wanted = {d.name: d for d in definitions}
        creates: list[dict[str, Any]] = []
        for name, definition in wanted.items():
            current = stored.get(name)
            if current is None:
                changes["create"].append(name)
                if not dry_run:
                    creates.append(definition.column_values())
            elif normalize(from_row(current)) == normalize(definition):
                changes["unchanged"].append(name)
            elif not update_existing:
                changes["existing"].append(name)
            else:
                changes["update"].append(name)
                if not dry_run:
                    values = definition.column_values()
                    values.pop("name")
                    await ScheduleStore.update_schedule(s, name, values)
        if creates:
            await ScheduleStore.insert_schedules(s, creates)
        if prune:
            for name in sorted(set(stored) - set(wanted)):
                if stored[name].get("origin", "user") != "user":
                    continue  # the app's beat_schedule owns it (synced at beat start)
                changes["delete"].append(name)
                if not dry_run:
                    await ScheduleStore.delete_schedule(s, name)
        if not dry_run:
            who = actor or default_actor()
            await AuditStore.add_audits(
                s,
                [
                    {
                        "actor": who,
                        "action": f"schedule.{action}",
                        "target_type": "schedule",
                        "target": name,
                        "detail": to_mapping(wanted[name]) if name in wanted else {},
                    }
                    for action in ("create", "update", "delete")
                    for name in changes[action]
                ],
            )
    return changes


async def aupsert_schedule(
    definition: ScheduleDefinition,
    *,
    session: AsyncSession | None = None,
    check_task: bool = True,
    actor: str | None = None,
) -> UpsertOutcome:
    """Create the schedule, or update it to match `definition`; validated first."""
    validate(definition, registered_tasks() if check_task else None)
    changes = await areconcile([definition], session=session, actor=actor)
    if changes["create"]:
        return UpsertOutcome.CREATED
    return UpsertOutcome.UPDATED if changes["update"] else UpsertOutcome.UNCHANGED


async def alist_schedules(*, session: AsyncSession | None = None) -> list[dict[str, Any]]:
    return await within(session, ScheduleStore.list_schedules)


async def aget_schedule(name: str, *, session: AsyncSession | None = None) -> dict[str, Any]:
    """Schedule `name` as `list_schedules` gives it (with its run state)."""
    rows = await within(session, ScheduleStore.list_schedules, names=[name])
    if not rows:
        raise ScheduleNotFound(name)
    return rows[0]


async def aschedule_exists(name: str, *, session: AsyncSession | None = None) -> bool:
    return await within(session, ScheduleStore.get_schedule_by_name, name) is not None


async def acreate_schedules_if_absent(
    rows: Sequence[Mapping[str, Any]], *, session: AsyncSession | None = None
) -> int:
    """Insert each schedule (column values) whose name is not taken; how many were new."""
    return await within(session, ScheduleStore.create_schedules_if_absent, rows)


async def aremove_schedule(
    name: str, *, session: AsyncSession | None = None, actor: str | None = None
) -> None:
    async with unit(session) as s:
        removed = await ScheduleStore.delete_schedule(s, name)
        await audit_removal(
            s, removed, ScheduleNotFound(name), actor, "schedule.delete", "schedule", name
        )


def describe(
    schedule: ScheduleDefinition | str,
    *,
    timezone: str = "UTC",
    name: str | None = None,
    day_match: str = "any",
    now: datetime | None = None,
) -> Description:
    """What a schedule does in words, plus a note for each DST change in the year after
    `now` that skips or repeats one of its slots. `schedule` is a definition or a cron
    expression (then `timezone`, `name` for `H` and `day_match` apply). Pure: no database."""
    if isinstance(schedule, ScheduleDefinition):
        return describe_definition(schedule, now)
    return describe_timing(
        cron=schedule, timezone=timezone, name=name, day_match=day_match, now=now
    )


upsert_schedule = blocking(aupsert_schedule)
list_schedules = blocking(alist_schedules)
get_schedule = blocking(aget_schedule)
schedule_exists = blocking(aschedule_exists)
create_schedules_if_absent = blocking(acreate_schedules_if_absent)
remove_schedule = blocking(aremove_schedule)
