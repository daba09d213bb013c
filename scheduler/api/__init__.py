"""The Python API: the CLI's queries and schedule changes for programs.

Every function has an async form (`a...`, optionally on the caller's `AsyncSession`, which
the caller then commits) and a sync form that runs on the process's event loop and engine::

    from scheduler import api
    api.upsert_schedule(api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *"))
    for run in api.history(schedule="nightly", limit=10): print(run["status"], run["duration_ms"])
"""

from __future__ import annotations

import contextlib
import enum
import getpass
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import get_settings
from scheduler.beat.engine import BackfillReport, Dispatcher, TriggerResult
from scheduler.core import accounts
from scheduler.core.cron_describe import Description, describe_definition
from scheduler.core.cron_describe import describe as describe_timing
from scheduler.core.definitions import (
    ScheduleDefinition,
    from_row,
    normalize,
    registered_tasks,
    to_mapping,
    validate,
)
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import (
    ConflictError,
    DuplicateError,
    ExecutionNotFound,
    InvalidScheduleError,
    NotAnExecutionId,
    NotFoundError,
    ScheduleNotFound,
    UserNotFound,
)
from scheduler.runtime import clock
from scheduler.runtime.db import get_runtime
from scheduler.store.accounts import AccountStore
from scheduler.store.aggregates import AggregateStore
from scheduler.store.audit import AuditStore
from scheduler.store.history import HistoryStore
from scheduler.store.pages import PageStore, RunFilter
from scheduler.store.schedules import ScheduleStore

T = TypeVar("T")
__all__ = [
    "BackfillReport",
    "ScheduleDefinition",
    "TriggerResult",
    "UpsertOutcome",
    "areconcile",
    "backfill",
    "get_execution",
    "history",
    "list_schedules",
    "pause_schedule",
    "remove_schedule",
    "resume_schedule",
    "retry_run",
    "run_tree",
    "stats",
    "trigger",
    "upsert_schedule",
]


class UpsertOutcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@contextlib.asynccontextmanager
async def _unit(session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
    """The caller's session as it is, or a new one committed on success."""
    if session is not None:
        yield session
        return
    async with get_runtime().sessions() as own, own.begin():
        yield own


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    return get_runtime().run(coro)


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
    async with _unit(session) as s:
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
    async with _unit(session) as s:
        return await ScheduleStore.list_schedules(s)


async def aremove_schedule(
    name: str, *, session: AsyncSession | None = None, actor: str | None = None
) -> None:
    async with _unit(session) as s:
        if not await ScheduleStore.delete_schedule(s, name):
            raise ScheduleNotFound(name)
        await _audit(s, actor, "schedule.delete", "schedule", name)


async def ahistory(
    *,
    schedule: str | None = None,
    task: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    root: uuid.UUID | str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first; `root` keeps one run tree (see `run_tree`)."""
    if limit < 1:
        raise InvalidScheduleError("limit must be at least 1")
    key = None if root is None else _execution_key(root)
    async with _unit(session) as s:
        return await HistoryStore.history(
            s,
            schedule=schedule,
            task=task,
            status=status,
            since=since,
            until=until,
            limit=limit,
            root=key,
        )


def _execution_key(execution_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotAnExecutionId(execution_id) from None


async def aget_execution(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> dict[str, Any]:
    try:
        key = execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotAnExecutionId(execution_id) from None
    async with _unit(session) as s:
        found = await HistoryStore.execution_details(s, key)
        tree = [] if found is None else await HistoryStore.run_tree(s, key)
    if found is None:
        raise ExecutionNotFound(key)
    found["children"] = [node for node in tree if node["parent_id"] == key]
    found["tree"] = tree
    return found


async def arun_tree(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Every run of the tree `execution_id` belongs to: its root (the run that started the
    tree, e.g. a scheduled run) and every run whose Celery root_id is that root (chain,
    group and chord steps, subtasks), oldest first; each has `parent_id` and `root_id`."""
    key = _execution_key(execution_id)
    async with _unit(session) as s:
        tree = await HistoryStore.run_tree(s, key)
    if not tree:
        raise ExecutionNotFound(key)
    return tree


async def apause_schedule(
    name: str, reason: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Pause schedule `name` (disable it) noting `reason`, `actor` (who) and the time; its
    runs written ahead are withdrawn. Returns the schedule as `list_schedules` gives it."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidScheduleError("a pause needs a reason (--reason TEXT)")
    async with _unit(session) as s:
        if not await ScheduleStore.pause_schedule(s, name, reason=reason, actor=actor):
            raise ScheduleNotFound(name)
        await _audit(s, actor, "schedule.pause", "schedule", name, reason=reason)
        return (await ScheduleStore.list_schedules(s, names=[name]))[0]


async def aresume_schedule(
    name: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Enable schedule `name` again (from its next slot, no catch-up for the paused time);
    the pause annotation is cleared. Audited as `schedule.resume` by `actor`."""
    async with _unit(session) as s:
        if not await ScheduleStore.resume_schedule(s, name):
            raise ScheduleNotFound(name)
        await _audit(s, actor, "schedule.resume", "schedule", name)
        return (await ScheduleStore.list_schedules(s, names=[name]))[0]


async def astats(
    *,
    since: datetime | None = None,
    schedule: str | None = None,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    since = since or datetime.now(UTC) - timedelta(hours=24)
    async with _unit(session) as s:
        return await HistoryStore.stats(s, since=since, schedule=schedule)


async def atrigger(
    name: str,
    *,
    force: bool = False,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    actor: str | None = None,
) -> TriggerResult:
    """Run schedule `name` now (trigger `manual`); respects its overlap policy unless `force`.
    `args`/`kwargs` replace the schedule's for this one run (recorded on the run).
    Audited as `schedule.trigger` by `actor` (default: the OS user)."""
    if args is not None and not isinstance(args, list):
        raise InvalidScheduleError("args must be a JSON array, e.g. '[1, \"a\"]'")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InvalidScheduleError("kwargs must be a JSON object, e.g. '{\"key\": 1}'")
    async with _dispatcher() as dispatcher:
        result = await dispatcher.trigger(
            name, force=force, now=clock.now(), args=args, kwargs=kwargs
        )
    detail: dict[str, Any] = {
        "execution_id": str(result.execution_id), "status": result.status.value, "force": force,
    }  # fmt: skip
    if args is not None or kwargs is not None:
        detail |= {"args": args, "kwargs": kwargs}
    async with _unit(None) as s:
        await _audit(s, actor, "schedule.trigger", "schedule", name, detail=detail)
    return result


async def abackfill(
    name: str,
    start: datetime,
    end: datetime,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    actor: str | None = None,
) -> BackfillReport:
    """Give each slot of schedule `name` from `start` to `end` (both included, not after
    now) that has no run yet a run with trigger `backfill`; see `Dispatcher.backfill`.
    Audited as `schedule.backfill` by `actor` unless `dry_run`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidScheduleError("backfill bounds need a time zone (aware datetimes)")
    async with _dispatcher() as dispatcher:
        report = await dispatcher.backfill(
            name,
            start.astimezone(UTC),
            end.astimezone(UTC),
            force=force,
            dry_run=dry_run,
            now=clock.now(),
            progress=progress,
        )
    if not dry_run:
        async with _unit(None) as s:
            await _audit(
                s, actor, "schedule.backfill", "schedule", name,
                detail={"from": start.isoformat(), "to": end.isoformat(), "force": force,
                        "created": len(report.created), "existing": len(report.existing),
                        "skipped": len(report.skipped)},
            )  # fmt: skip
    return report


@contextlib.asynccontextmanager
async def _dispatcher() -> AsyncIterator[Dispatcher]:
    from config.celery import app
    from scheduler.beat.publisher import Publisher

    publisher = Publisher(app)
    try:
        await clock.CLOCK.refresh(get_runtime().autocommit, get_settings().clock_resync_s)
        yield Dispatcher(
            sessions=get_runtime().sessions,
            publisher=publisher,
            registered=None,
            settings=get_settings(),
        )
    finally:
        publisher.close()


def upsert_schedule(
    definition: ScheduleDefinition, *, check_task: bool = True, actor: str | None = None
) -> UpsertOutcome:
    return _sync(aupsert_schedule(definition, check_task=check_task, actor=actor))


def list_schedules() -> list[dict[str, Any]]:
    return _sync(alist_schedules())


def remove_schedule(name: str, *, actor: str | None = None) -> None:
    _sync(aremove_schedule(name, actor=actor))


def history(**filters: Any) -> list[dict[str, Any]]:
    return _sync(ahistory(**filters))


def get_execution(execution_id: uuid.UUID | str) -> dict[str, Any]:
    return _sync(aget_execution(execution_id))


def stats(*, since: datetime | None = None, schedule: str | None = None) -> list[dict[str, Any]]:
    return _sync(astats(since=since, schedule=schedule))


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


__all__ += ["Description", "describe"]


def trigger(
    name: str,
    *,
    force: bool = False,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    actor: str | None = None,
) -> TriggerResult:
    return _sync(atrigger(name, force=force, args=args, kwargs=kwargs, actor=actor))


def backfill(
    name: str,
    start: datetime,
    end: datetime,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    actor: str | None = None,
) -> BackfillReport:
    return _sync(
        abackfill(name, start, end, force=force, dry_run=dry_run, progress=progress, actor=actor)
    )


def pause_schedule(name: str, reason: str, *, actor: str | None = None) -> dict[str, Any]:
    return _sync(apause_schedule(name, reason, actor=actor))


def resume_schedule(name: str, *, actor: str | None = None) -> dict[str, Any]:
    return _sync(aresume_schedule(name, actor=actor))


def run_tree(execution_id: uuid.UUID | str) -> list[dict[str, Any]]:
    return _sync(arun_tree(execution_id))


# --- Audit, accounts and the dashboard's reads ------------------------------------------


def default_actor() -> str:
    """Who a change is recorded as when the caller does not say: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def _audit(
    session: AsyncSession,
    actor: str | None,
    action: str,
    target_type: str,
    target: str | None,
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await AuditStore.add_audit(
        session,
        actor=actor or default_actor(),
        action=action,
        target_type=target_type,
        target=target,
        reason=reason,
        detail=detail,
    )


async def arecord_audit(
    action: str,
    target_type: str,
    target: str | None,
    *,
    actor: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    session: AsyncSession | None = None,
) -> None:
    """Write one `audit_log` entry (for changes made outside this module's functions)."""
    async with _unit(session) as s:
        await _audit(s, actor, action, target_type, target, reason=reason, detail=detail)


async def aaudit_log(
    *,
    since: datetime | None = None,
    before_id: int | None = None,
    target_type: str | None = None,
    target: str | None = None,
    limit: int = 100,
    session: AsyncSession | None = None,
) -> list[dict[str, Any]]:
    """Audit entries newest first; page back with `before_id` (the last entry's id)."""
    if not 1 <= limit <= 1000:
        raise InvalidScheduleError("limit must be between 1 and 1000")
    async with _unit(session) as s:
        return await AuditStore.audit_entries(
            s, since=since, before_id=before_id, target_type=target_type, target=target,
            limit=limit,
        )  # fmt: skip


async def aadd_user(
    name: str, role: str, password: str, *, actor: str | None = None,
    session: AsyncSession | None = None,
) -> None:  # fmt: skip
    """Create a dashboard user; the password is stored as a scrypt hash."""
    checked = _role(role)
    if not name.strip() or len(name) > 200:
        raise InvalidScheduleError("a user name must be 1 to 200 characters")
    if len(password) < 8:
        raise InvalidScheduleError("a password must be at least 8 characters")
    hashed = accounts.hash_password(password)
    async with _unit(session) as s:
        if not await AccountStore.add_user(s, name, checked.value, hashed):
            raise DuplicateError(f"a user named {name!r} exists: remove it first")
        await _audit(s, actor, "user.create", "user", name, detail={"role": checked.value})


async def alist_users(*, session: AsyncSession | None = None) -> list[dict[str, Any]]:
    async with _unit(session) as s:
        return await AccountStore.users(s)


async def aremove_user(
    name: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> None:
    async with _unit(session) as s:
        if not await AccountStore.remove_user(s, name):
            raise UserNotFound(name)
        await _audit(s, actor, "user.delete", "user", name)


async def acreate_token(
    name: str, role: str, *, actor: str | None = None, session: AsyncSession | None = None
) -> str:
    """A new API token with `role`; returned once, stored only as a hash."""
    checked = _role(role)
    token = accounts.new_token()
    async with _unit(session) as s:
        token_id = await AccountStore.add_token(s, name, checked.value, accounts.hash_token(token))
        await _audit(
            s, actor, "token.create", "token", str(token_id),
            detail={"name": name, "role": checked.value},
        )  # fmt: skip
    return token


async def aauthenticate_password(
    name: str, password: str, *, session: AsyncSession | None = None
) -> accounts.Role | None:
    """The user's role when the password matches, else None (same cost either way)."""
    async with _unit(session) as s:
        user = await AccountStore.user(s, name)
    stored = user["password_hash"] if user else accounts.DUMMY_HASH
    if accounts.verify_password(password, stored) and user is not None:
        return accounts.Role(user["role"])
    return None


async def aauthenticate_token(
    token: str, *, session: AsyncSession | None = None
) -> tuple[str, accounts.Role] | None:
    """(token name, role) of a valid token, recording its use; else None."""
    async with _unit(session) as s:
        found = await AccountStore.use_token(s, accounts.hash_token(token))
    return None if found is None else (f"token:{found['name']}", accounts.Role(found["role"]))


async def auser_role(name: str, *, session: AsyncSession | None = None) -> accounts.Role | None:
    """The role of user `name`, or None when there is no such user (any more)."""
    async with _unit(session) as s:
        user = await AccountStore.user(s, name)
    return None if user is None else accounts.Role(user["role"])


async def ahas_accounts(*, session: AsyncSession | None = None) -> bool:
    async with _unit(session) as s:
        return await AccountStore.has_accounts(s)


def _role(role: str) -> accounts.Role:
    try:
        return accounts.Role(role)
    except ValueError:
        raise InvalidScheduleError(
            f"unknown role {role!r}: use viewer, operator or admin"
        ) from None


async def aschedules_page(
    *,
    search: str | None = None,
    state: str | None = None,
    after: str | None = None,
    limit: int = 50,
    sparkline: int = 50,
    session: AsyncSession | None = None,
) -> dict[str, Any]:
    """One page of schedules by name (after `after`), each with its newest `sparkline` runs
    under `recent` (newest first) and `last_status`; `total` matching; `next` page key."""
    if not 1 <= limit <= 500:
        raise InvalidScheduleError("limit must be between 1 and 500")
    if state not in (None, "", "all", "enabled", "paused", "error"):
        raise InvalidScheduleError("state must be one of all, enabled, paused, error")
    async with _unit(session) as s:
        rows, total = await PageStore.schedules_page(
            s, search=search or None, state=state or None, after=after, limit=limit
        )
        recent = await PageStore.recent_runs_of(s, [r["id"] for r in rows], per_schedule=sparkline)
    for row in rows:
        row["recent"] = recent.get(row["id"], [])
        row["last_status"] = row["recent"][0]["status"] if row["recent"] else None
    return {
        "schedules": rows,
        "total": total,
        "next": rows[-1]["name"] if len(rows) == limit else None,
    }


async def aschedule(name: str, *, session: AsyncSession | None = None) -> dict[str, Any]:
    """Every column of schedule `name`."""
    async with _unit(session) as s:
        row = await PageStore.schedule_row(s, name)
    if row is None:
        raise ScheduleNotFound(name)
    return row


async def aruns_page(
    *,
    schedule: str | None = None,
    task: str | None = None,
    status: str | None = None,
    trigger: str | None = None,
    worker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    count: bool = True,
    session: AsyncSession | None = None,
) -> dict[str, Any]:
    """Runs newest first with keyset paging: `next` is the cursor of the following page.
    `count` is exact up to 10,000 matches, the planner's estimate above (`estimated`)."""
    if not 1 <= limit <= 500:
        raise InvalidScheduleError("limit must be between 1 and 500")
    try:
        status_id = None if not status else ExecutionStatus(status).id
    except ValueError:
        codes = ", ".join(s.value for s in ExecutionStatus)
        raise InvalidScheduleError(f"unknown status {status!r}: use one of {codes}") from None
    before = decode_cursor(cursor) if cursor else None
    async with _unit(session) as s:
        schedule_id = None
        if schedule:
            schedule_id = await PageStore.schedule_id(s, schedule)
            if schedule_id is None:
                raise ScheduleNotFound(schedule)
        where = RunFilter(
            schedule_id=schedule_id, task=task or None, status_id=status_id,
            trigger=trigger or None, worker=worker or None, since=since, until=until,
        )  # fmt: skip
        runs = await PageStore.runs_page(s, where, before=before, limit=limit)
        total: int | None
        if before is None and len(runs) < limit:
            total, estimated = len(runs), False  # the whole result is on this page
        else:
            total, estimated = await PageStore.count_runs(s, where) if count else (None, False)
    last = runs[-1] if len(runs) == limit else None
    return {
        "runs": runs,
        "next": encode_cursor(last["created_at"], last["id"]) if last else None,
        "count": total,
        "estimated": estimated,
    }


def encode_cursor(created_at: datetime, execution_id: uuid.UUID) -> str:
    return f"{created_at.astimezone(UTC).isoformat()}~{execution_id}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, _, key = cursor.partition("~")
        instant = datetime.fromisoformat(when)
        if instant.tzinfo is None:
            raise ValueError(cursor)
        return instant, uuid.UUID(key)
    except ValueError:
        raise InvalidScheduleError("cursor is not one this API returned") from None


async def arun(
    execution_id: uuid.UUID | str, *, session: AsyncSession | None = None
) -> dict[str, Any]:
    """Every column of one run, with its schedule's name."""
    try:
        key = execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(execution_id)
    except ValueError:
        raise NotAnExecutionId(execution_id) from None
    async with _unit(session) as s:
        found = await PageStore.run_row(s, key)
    if found is None:
        raise ExecutionNotFound(key)
    return found


async def arevoke_runs(execution_ids: list[uuid.UUID], *, actor: str | None = None) -> list[str]:
    """Revoke runs not yet finished: marked `revoked` and revoked on the workers (a queued
    message is then dropped). Returns the ids that were still active."""
    from config.celery import app

    async with _unit(None) as s:
        revoked = await PageStore.mark_revoked(s, execution_ids)
        for key in revoked:
            await _audit(s, actor, "run.revoke", "run", key)
    if revoked:
        app.control.revoke(revoked)
    return revoked


async def aoverview(
    *, now: datetime | None = None, session: AsyncSession | None = None
) -> dict[str, Any]:
    """The overview page: runs per hour by status (24 h), failing schedules, stuck or lost
    runs, workers and the beat seen in the last 15 minutes, the outbox depth."""
    now = now or datetime.now(UTC)
    day = now - timedelta(hours=24)
    async with _unit(session) as s:
        hours = await AggregateStore.runs_per_hour(s, since=day)
        failing = await AggregateStore.failing_schedules(s, since=day, limit=20)
        stuck = await AggregateStore.stuck_runs(
            s, older_than=now - timedelta(minutes=10), lost_since=day, limit=20
        )
        activity = await AggregateStore.activity(s, since=now - timedelta(minutes=15))
        counts = await AggregateStore.schedule_counts(s)
    return {
        "now": now, "runs_per_hour": hours, "failing": failing, "stuck": stuck,
        "schedules": counts, **activity,
    }  # fmt: skip


async def atask_stats(
    *, since: datetime, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Per task since `since`: runs, successes, failures, p50/p95/max duration in ms."""
    async with _unit(session) as s:
        return await AggregateStore.task_stats(s, since=since)


async def afailures(
    *, since: datetime, session: AsyncSession | None = None
) -> list[dict[str, Any]]:
    """Failed, timed-out and lost runs since `since`, grouped by task, error type and status."""
    async with _unit(session) as s:
        return await AggregateStore.failure_groups(s, since=since)


async def afilter_choices(*, session: AsyncSession | None = None) -> dict[str, list[str]]:
    async with _unit(session) as s:
        return await AggregateStore.distinct_values(s)


def audit_log(**filters: Any) -> list[dict[str, Any]]:
    return _sync(aaudit_log(**filters))


def add_user(name: str, role: str, password: str, *, actor: str | None = None) -> None:
    _sync(aadd_user(name, role, password, actor=actor))


def list_users() -> list[dict[str, Any]]:
    return _sync(alist_users())


def remove_user(name: str, *, actor: str | None = None) -> None:
    _sync(aremove_user(name, actor=actor))


def create_token(name: str, role: str, *, actor: str | None = None) -> str:
    return _sync(acreate_token(name, role, actor=actor))


def has_accounts() -> bool:
    return _sync(ahas_accounts())


async def aretry_run(execution_id: uuid.UUID | str, *, actor: str | None = None) -> TriggerResult:
    """Run again, as a new run (trigger `retry`, `parent_id` = `execution_id`, the same task,
    args, kwargs and schedule), the run `execution_id` of a schedule that ended `failed`,
    `timeout`, `lost` or `revoked`; any other raises ConflictError. Published like a manual
    trigger (the overlap policy does not judge it). Audited as `run.retry` by `actor`."""
    key = _execution_key(execution_id)
    async with _dispatcher() as dispatcher:
        result = await dispatcher.retry(key, now=clock.now())
    async with _unit(None) as s:
        await _audit(
            s, actor, "run.retry", "run", str(key),
            detail={"new_execution_id": str(result.execution_id), "status": result.status.value},
        )  # fmt: skip
    return result


def retry_run(execution_id: uuid.UUID | str, *, actor: str | None = None) -> TriggerResult:
    return _sync(aretry_run(execution_id, actor=actor))


async def aretry_runs(execution_ids: list[uuid.UUID], *, actor: str | None = None) -> list[str]:
    """`aretry_run` for each of `execution_ids`, leaving out those that cannot be retried
    (unknown, not failed, timed out, lost or revoked, or of no schedule). Returns the new
    run ids."""
    made = []
    for key in execution_ids:
        try:
            result = await aretry_run(key, actor=actor)
        except (ConflictError, NotFoundError):
            continue
        made.append(str(result.execution_id))
    return made
