"""What the online move (scheduler.runtime.migrate_online) and its steps
(scheduler.runtime.online_steps) share: the revisions it goes between, what it takes from
revision 0009, and what it reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

MOVE_FROM = "0008"
MOVE_TO = "0009"


class PartitionedDDL(Protocol):
    """What the move takes from revision 0009 (migrations/versions/0009_*.py)."""

    SCHEMA: str
    COLUMNS: str
    SLOT_ID_FUNCTION: str
    RECENT_RUNS: str
    GRANTS: str
    ALERT_TRIGGERS: list[str]
    FOREIGN_KEYS: list[tuple[str, str]]

    def daily_partitions(self, recent_runs: int) -> bool: ...

    def create_table(self, table: str, *, partitioned: bool, daily: bool) -> list[str]: ...

    def keys(self, table: str, *, partitioned: bool, suffix: str = "") -> list[str]: ...

    def foreign_keys(
        self, table: str, *, suffix: str = "", not_valid: bool = False
    ) -> list[str]: ...

    def indexes(self, table: str, *, partitioned: bool, suffix: str = "") -> list[str]: ...

    def alert_triggers(self, table: str, *, partitioned: bool) -> list[str]: ...

    def grant_statements(self, table: str, grants: Sequence[tuple[str, str]]) -> list[str]: ...


class Step(StrEnum):
    UPGRADE = "upgrade"
    PREPARE = "prepare"
    MIRROR = "mirror"
    COPY = "copy"
    KEYS = "keys"
    CHECK = "check"
    SWITCH = "switch"


@dataclass(frozen=True)
class Progress:
    """What a step did, for the command's output; the copy's figures are this run's."""

    step: Step
    note: str = ""
    rows_read: int = 0
    rows_estimate: int = 0
    rows_per_s: float = 0.0


@dataclass(frozen=True)
class OnlineReport:
    """How an online upgrade went. `moved`: the copy ran (the database was at 0008);
    `switched`: `executions` is the partitioned table now. Row figures count the whole move,
    earlier interrupted runs included; times are this run's."""

    revision: str | None
    moved: bool = False
    switched: bool = False
    resumed: bool = False
    rows: int = 0
    rows_read: int = 0
    rows_copied: int = 0
    copy_s: float = 0.0
    switch_s: float = 0.0
    switch_lock_wait_s: float = 0.0
    switch_attempts: int = 0
