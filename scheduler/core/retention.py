"""How long finished runs are kept, by outcome: the classes, their ages, a schedule's override.

Three classes, each with a default age (settings) and a per-schedule override
(`options.retention_days`, e.g. `{"success": 30, "failure": 365}`, checked by
scheduler.core.options):

- success: `success` (`SCHEDULER_RETENTION_SUCCESS`, default 14 days);
- failure: `failed`, `timeout`, `lost` and `revoked` (`SCHEDULER_RETENTION_FAILURE`, 90 days);
- skipped: `skipped`, `missed` (`SCHEDULER_RETENTION_SKIPPED`, 7 days).

A run's age counts from `created_at`. Runs not yet terminal are never removed. The SQL that
applies a policy is in `scheduler.store.retention`; the beat's upkeep and `prune` in
`scheduler.beat.upkeep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from config.settings import Settings
from scheduler.core.definitions import parse_duration
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError

CLASSES: dict[str, tuple[ExecutionStatus, ...]] = {
    "success": (ExecutionStatus.SUCCESS,),
    "failure": (
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.LOST,
        ExecutionStatus.REVOKED,
    ),
    "skipped": (ExecutionStatus.SKIPPED, ExecutionStatus.MISSED),
}
OVERRIDE_KEY = "retention_days"


def parse_retention(value: str) -> timedelta:
    """`14d`, `36h`, ... or a plain number of days."""
    try:
        days = Decimal(value.strip())
    except InvalidOperation:
        return timedelta(seconds=float(parse_duration(value)))
    if days <= 0:
        raise InvalidScheduleError(f"retention must be above 0: {value!r}")
    return timedelta(days=float(days))


@dataclass(frozen=True)
class Policy:
    """Ages per class; `single` (prune --older-than) replaces all three."""

    ages: dict[str, timedelta]
    single: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            {
                "success": parse_retention(settings.retention_success),
                "failure": parse_retention(settings.retention_failure),
                "skipped": parse_retention(settings.retention_skipped),
            }
        )

    @classmethod
    def older_than(cls, age: timedelta) -> Policy:
        return cls(dict.fromkeys(CLASSES, age), single=True)


@dataclass
class PruneReport:
    dropped: list[str] = field(default_factory=list)
    dropped_rows: int = 0
    compacted: list[str] = field(default_factory=list)
    """Partitions rewritten with only their kept runs (counted in `deleted`)."""
    deleted: int = 0
