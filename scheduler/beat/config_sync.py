"""The app's static `beat_schedule`, loaded into `schedules` at beat start.

Teams coming from celery beat, RedBeat or django-celery-beat keep entries in
`app.conf.beat_schedule`; those schedulers load them at start-up, and so does this one. Each
entry becomes a row with `origin = 'config'`, created or updated to match the entry; a
config row whose entry left the configuration is removed. Rows made by users (`origin =
'user'`: CLI, API, YAML, SQL, `scheduler import`) are never touched: an entry whose name a user
row holds is skipped and logged. An entry that cannot be mapped or validated is skipped and
logged too; its config row, if any, is kept as it was.

Beats that start together sync one after the other (a transaction-level advisory lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.api.importers import from_beat_schedule
from scheduler.core.definitions import ScheduleDefinition, from_row, normalize, validate
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.store.schedules import ScheduleStore

log = logging.getLogger(__name__)
CONFIG = "config"
USER = "user"


@dataclass(frozen=True)
class SyncReport:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    taken: tuple[str, ...] = ()
    """Entries whose name a user's schedule holds: skipped."""
    invalid: tuple[tuple[str, str], ...] = field(default=())
    """(entry, why) for entries that cannot run: skipped."""

    def line(self) -> str:
        """The one log line of a sync."""
        parts = [
            f"{len(self.created)} created",
            f"{len(self.updated)} updated",
            f"{len(self.removed)} removed",
            f"{len(self.unchanged)} unchanged",
        ]
        text = "beat_schedule synced into schedules (origin config): " + ", ".join(parts)
        if self.taken:
            text += f"; skipped, name held by a user schedule: {', '.join(self.taken)}"
        if self.invalid:
            text += "; skipped, invalid: " + "; ".join(f"{n} ({why})" for n, why in self.invalid)
        return text


def entries(
    app: Any, registered: frozenset[str] | None
) -> tuple[list[ScheduleDefinition], list[tuple[str, str]]]:
    """The app's `beat_schedule` as validated definitions, and the entries refused with why."""
    plan = from_beat_schedule(app)
    good: list[ScheduleDefinition] = []
    invalid = list(plan.unmapped)
    for definition in plan.definitions:
        try:
            good.append(validate(definition, registered))
        except InvalidScheduleError as exc:
            invalid.append((definition.name, str(exc)))
    return good, invalid


async def sync(
    session: AsyncSession,
    definitions: list[ScheduleDefinition],
    invalid: list[tuple[str, str]] | None = None,
) -> SyncReport:
    """Make the config-owned rows match `definitions` (validated) in the caller's transaction."""
    await ScheduleStore.lock_config_sync(session)
    invalid = invalid or []
    # the rows these definitions name (a user's row may hold one) and the config-owned ones
    # (some may have left the config): not every schedule, which may be millions
    names = [d.name for d in definitions] + [name for name, _ in invalid]
    rows = await ScheduleStore.list_schedules(session, names=names, origin=CONFIG)
    stored = {row["name"]: row for row in rows}
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    taken: list[str] = []
    for definition in definitions:
        current = stored.get(definition.name)
        if current is None:
            await ScheduleStore.insert_schedule(
                session, {**definition.column_values(), "origin": CONFIG}
            )
            created.append(definition.name)
        elif current["origin"] != CONFIG:
            taken.append(definition.name)
        elif normalize(from_row(current)) == normalize(definition):
            unchanged.append(definition.name)
        else:
            values = definition.column_values()
            values.pop("name")
            await ScheduleStore.update_schedule(session, definition.name, values)
            updated.append(definition.name)
    kept = {d.name for d in definitions} | {name for name, _ in invalid}
    removed = sorted(
        name for name, row in stored.items() if row["origin"] == CONFIG and name not in kept
    )
    for name in removed:
        await ScheduleStore.delete_schedule(session, name)
    return SyncReport(
        created=tuple(created),
        updated=tuple(updated),
        unchanged=tuple(unchanged),
        removed=tuple(removed),
        taken=tuple(taken),
        invalid=tuple(invalid),
    )


async def sync_app(
    session: AsyncSession, app: Any, registered: frozenset[str] | None
) -> SyncReport:
    """Sync `app.conf.beat_schedule` (see the module's docstring) and log what was done."""
    definitions, invalid = entries(app, registered)
    report = await sync(session, definitions, invalid)
    log.info(report.line())
    return report
