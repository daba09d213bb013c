"""Schedule definitions as users write them (CLI flags, YAML, Python), validated before any
write. The same rules serve `schedules add/update`, `apply`, the imports and `scheduler.api`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from scheduler.core.bounds import (
    MAX_JSON_BYTES,
    Unreadable,
    json_measure,
    json_problem,
    min_interval_s,
)
from scheduler.core.cron import DAY_MATCHES, make_timing, validate_timezone
from scheduler.core.domain import (
    EARLIEST_INSTANT,
    LATEST_INSTANT,
    LONGEST_SECONDS,
    MisfirePolicy,
    OverlapPolicy,
)
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.options import check_options

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_S = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600),
           "d": Decimal(86400), "w": Decimal(604800)}  # fmt: skip


@dataclass(frozen=True)
class ScheduleDefinition:
    """The user-owned columns of a `schedules` row (no ids, no run state)."""

    name: str
    task: str
    cron: str | None = None
    interval_seconds: Decimal | None = None
    run_at: datetime | None = None
    timezone: str = "UTC"
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    enabled: bool = True
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = None
    misfire_policy: str = MisfirePolicy.RUN_ONCE.value
    misfire_grace_seconds: int | None = None
    overlap_policy: str = OverlapPolicy.ALLOW.value
    jitter_seconds: int = 0
    description: str | None = None
    day_match: str = "any"
    """`any`: a cron's day of month OR day of week (POSIX); `all`: both (Celery's crontab)."""
    pause_after_failures: int | None = None
    """Pause the schedule after this many consecutive terminal failures (None: never)."""
    monitored: bool = False
    """Per-schedule Prometheus series (docs/OBSERVABILITY.md)."""

    def column_values(self) -> dict[str, Any]:
        # field by field, not `asdict` (its deep copy dominated bulk applies); the JSON
        # fields are copied below
        values = {name: getattr(self, name) for name in FIELD_NAMES}
        values["args"] = list(self.args or [])
        values["kwargs"] = dict(self.kwargs or {})
        values["options"] = dict(self.options or {})
        return values


FIELD_NAMES = tuple(f.name for f in fields(ScheduleDefinition))
DEFAULTS = {f.name: f.default for f in fields(ScheduleDefinition) if f.name not in ("name", "task")}
KIND_FIELDS = ("cron", "interval_seconds", "run_at")


def parse_duration(text: str) -> Decimal:
    """`30s`, `5m`, `1h30m`, `2d`, `250ms` or a plain number of seconds."""
    raw = text.strip().lower()
    try:
        return _positive(Decimal(raw))
    except InvalidOperation:
        pass
    matches = list(_DURATION.finditer(raw))
    if not matches or "".join(m.group(0) for m in matches).replace(" ", "") != raw.replace(" ", ""):
        raise InvalidScheduleError(
            f"invalid duration {text!r}: use forms like 30s, 5m, 1h, 1h30m, 2d"
        )
    return _positive(sum((Decimal(m.group(1)) * _UNIT_S[m.group(2)] for m in matches), Decimal(0)))


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise InvalidScheduleError("a duration must be greater than zero")
    return value


def parse_instant(text: str, tz: str = "UTC") -> datetime:
    """An ISO 8601 instant; without an offset it is read in `tz`."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidScheduleError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2026-12-24T18:00 or 2026-12-24T18:00:00+01:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=validate_timezone(tz))
    return value.astimezone(UTC)


def validate(
    definition: ScheduleDefinition, registered: frozenset[str] | None = None
) -> ScheduleDefinition:
    """Check everything the beat would refuse; return the definition normalized."""
    if not definition.name or not definition.name.strip():
        raise InvalidScheduleError("a schedule needs a name")
    if len(definition.name) > 200:
        raise InvalidScheduleError("a schedule name has at most 200 characters")
    if not definition.task:
        raise InvalidScheduleError("a schedule needs a task: see `scheduler tasks`")
    if registered is not None and definition.task not in registered:
        raise InvalidScheduleError(
            f"task {definition.task!r} is not registered: see `scheduler tasks` for the names"
        )
    if definition.day_match not in DAY_MATCHES:
        raise InvalidScheduleError(f"day_match {definition.day_match!r}: use any or all")
    make_timing(
        cron=definition.cron,
        interval_seconds=definition.interval_seconds,
        run_at=definition.run_at,
        timezone=definition.timezone,
        name=definition.name,
        day_match=definition.day_match,
    )
    check_interval_floor(definition.interval_seconds)
    check_json_fields(definition.args, definition.kwargs, definition.options)
    if definition.args is not None and not isinstance(definition.args, list):
        raise InvalidScheduleError("args must be a JSON array, e.g. '[1, \"a\"]'")
    for label, value in (("kwargs", definition.kwargs), ("options", definition.options)):
        if value is not None and not isinstance(value, dict):
            raise InvalidScheduleError(f"{label} must be a JSON object, e.g. '{{\"key\": 1}}'")
    if definition.options:
        check_options(definition.options)
    for label, whole in (
        ("misfire grace", definition.misfire_grace_seconds),
        ("jitter", definition.jitter_seconds),
        ("max runs", definition.max_runs),
    ):
        if whole is not None and (isinstance(whole, bool) or not isinstance(whole, int)):
            raise InvalidScheduleError(f"{label} must be a whole number, not {whole!r}")
        most = 2_147_483_647 if label == "max runs" else LONGEST_SECONDS
        if whole is not None and whole > most:
            raise InvalidScheduleError(f"{label} must be at most {most}")
    if definition.misfire_policy not in {p.value for p in MisfirePolicy}:
        raise InvalidScheduleError(
            f"misfire policy {definition.misfire_policy!r}: use run_once, skip or run_all"
        )
    if definition.overlap_policy not in {p.value for p in OverlapPolicy}:
        raise InvalidScheduleError(
            f"overlap policy {definition.overlap_policy!r}: use allow, skip or buffer_one"
        )
    for label, number in (
        ("misfire grace", definition.misfire_grace_seconds),
        ("jitter", definition.jitter_seconds),
    ):
        if number is not None and number < 0:
            raise InvalidScheduleError(f"{label} must not be negative")
    if definition.max_runs is not None and definition.max_runs < 1:
        raise InvalidScheduleError("max runs must be at least 1")
    failures = definition.pause_after_failures
    if failures is not None and (
        isinstance(failures, bool) or not isinstance(failures, int) or failures < 1
    ):
        raise InvalidScheduleError("pause after failures must be a whole number of at least 1")
    for label, instant in (
        ("the time (--at)", definition.run_at),
        ("start", definition.start_at),
        ("end", definition.end_at),
    ):
        if instant is not None and not EARLIEST_INSTANT <= instant <= LATEST_INSTANT:
            raise InvalidScheduleError(
                f"{label} {instant.isoformat()} is out of range: use a time between "
                f"{EARLIEST_INSTANT.date()} and {LATEST_INSTANT.date()}"
            )
    if definition.start_at and definition.end_at and definition.end_at <= definition.start_at:
        raise InvalidScheduleError("end must be after start")
    return definition


def check_interval_floor(
    interval_seconds: Decimal | float | int | None, floor: float | None = None
) -> None:
    """Refuse intervals below `floor`, by default `SCHEDULER_MIN_INTERVAL_S` (1 s)."""
    if interval_seconds is None or isinstance(interval_seconds, bool):
        return
    try:
        value = Decimal(str(interval_seconds))
    except InvalidOperation:
        return
    floor = min_interval_s() if floor is None else floor
    if value.is_finite() and value < Decimal(str(floor)):
        raise InvalidScheduleError(
            f"an interval must be at least {floor:g}s (SCHEDULER_MIN_INTERVAL_S lowers the floor)"
        )


def check_json_fields(args: Any, kwargs: Any, options: Any) -> None:
    """Depth and size bounds of args, kwargs and options, one by one and together: the same
    check for every entry point and the beat."""
    total = 0
    for label, value in (("args", args), ("kwargs", kwargs), ("options", options)):
        if value is None or (type(value) in (list, dict) and not value):
            continue  # nothing to measure (the beat's usual case, checked per run)
        problem, size = json_measure(label, value)
        if problem:
            raise InvalidScheduleError(problem)
        total += size
    if total > MAX_JSON_BYTES:
        raise InvalidScheduleError(
            f"args, kwargs and options are {total} bytes of JSON together: at most 1 MB"
        )


def parse_json(text: str, label: str) -> Any:
    if len(text) > MAX_JSON_BYTES:
        raise InvalidScheduleError(f"{label} is {len(text)} characters: at most 1 MB")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidScheduleError(
            f"{label} is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidScheduleError(f"{label} is nested too deep") from None
    problem = json_problem(label, value)
    if problem:
        raise InvalidScheduleError(problem)
    return value


def from_mapping(data: Any) -> ScheduleDefinition:
    """A definition from a YAML/JSON mapping; unknown keys are errors, not silently dropped."""
    if not isinstance(data, dict):
        raise InvalidScheduleError("each schedule must be a mapping of fields")
    unknown = sorted(set(data) - set(FIELD_NAMES) - {"every", "at"})
    if unknown:
        raise InvalidScheduleError(
            f"schedule {data.get('name', '?')!r}: unknown field(s) {', '.join(unknown)}"
        )
    values = dict(data)
    if "every" in values:
        values["interval_seconds"] = parse_duration(str(values.pop("every")))
    if "at" in values:
        values["run_at"] = values.pop("at")
    tz = str(values.get("timezone") or "UTC")
    for key in ("run_at", "start_at", "end_at"):
        value = values.get(key)
        if isinstance(value, str):
            values[key] = parse_instant(value, tz)
        elif isinstance(value, datetime):
            values[key] = (
                value.replace(tzinfo=validate_timezone(tz)) if value.tzinfo is None else value
            ).astimezone(UTC)
    if values.get("interval_seconds") is not None and not isinstance(
        values["interval_seconds"], Decimal
    ):
        values["interval_seconds"] = parse_duration(str(values["interval_seconds"]))
    if "name" not in values or "task" not in values:
        raise InvalidScheduleError("each schedule needs `name` and `task`")
    values["name"] = str(values["name"])
    return ScheduleDefinition(**values)


def to_mapping(definition: ScheduleDefinition) -> dict[str, Any]:
    """The YAML form: name and task first, then every field that differs from its default."""
    out: dict[str, Any] = {"name": definition.name, "task": definition.task}
    normalized = normalize(definition)
    for name in FIELD_NAMES[2:]:
        value = getattr(normalized, name)
        if value == DEFAULTS[name] or (name in ("args", "kwargs", "options") and not value):
            continue
        if isinstance(value, Unreadable):
            value = str(value)
        elif isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        out[name] = value
    return out


def normalize(definition: ScheduleDefinition) -> ScheduleDefinition:
    """Comparable form: empty JSON as defaults, instants in UTC, interval as plain Decimal."""

    def keep(value: Any, kind: type) -> Any:
        return value if isinstance(value, Unreadable) else kind(value or kind())

    return replace(
        definition,
        args=keep(definition.args, list),
        kwargs=keep(definition.kwargs, dict),
        options=keep(definition.options, dict),
        interval_seconds=None
        if definition.interval_seconds is None
        else Decimal(definition.interval_seconds).normalize(),
        run_at=definition.run_at.astimezone(UTC) if definition.run_at else None,
        start_at=definition.start_at.astimezone(UTC) if definition.start_at else None,
        end_at=definition.end_at.astimezone(UTC) if definition.end_at else None,
    )


def broken_fields(definition: ScheduleDefinition) -> list[str]:
    """The JSON fields of a stored definition that could not be read."""
    return [
        f"{name} {value}"
        for name in ("args", "kwargs", "options")
        if isinstance(value := getattr(definition, name), Unreadable)
    ]


def from_row(row: Any) -> ScheduleDefinition:
    """The definition part of a `Schedule` ORM row or a row mapping."""
    values: dict[str, Any] = (
        {name: row[name] for name in FIELD_NAMES}
        if isinstance(row, dict)
        else {name: getattr(row, name) for name in FIELD_NAMES}
    )
    return ScheduleDefinition(**values)
