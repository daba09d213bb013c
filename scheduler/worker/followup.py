"""What a run's outcome sets off, decided where the outcome is written (the worker, the
worker's main process for outcomes learnt outside the run, the reaper for lost runs):

- auto-pause: a failure (failed, timeout, lost) of a schedule with `pause_after_failures`
  pauses it when its last that many terminal runs all failed;
- the buffered run of a `buffer_one` schedule, held back (`pending`, not published) while a
  run of the schedule is in progress, is published once that run's outcome is written.

Both happen in one transaction that first locks the schedule row, so outcomes written at
the same moment by several processes are judged one after the other: a schedule pauses once
and a buffered run is released once. The release publishes inside that transaction and marks
the run `queued` before it commits; a process that dies before it leaves the run `pending`
and no longer held, and the beat's outbox sweep publishes it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from typing import Any

from scheduler.broker.frames import OutgoingMessage
from scheduler.broker.publisher import Publisher
from scheduler.core.domain import ExecutionStatus
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.core.options import check_options
from scheduler.store.common import FAILURE_STATUS_IDS
from scheduler.store.followups import FollowUpStore
from scheduler.store.run_tables import RunTables
from scheduler.store.runs import RunStore

log = logging.getLogger(__name__)
AUTO_PAUSE_ACTOR = "auto-pause"
"""`paused_by` of a schedule that paused itself after failures."""

_publisher: tuple[int, Publisher] | None = None


def process_publisher() -> Publisher:
    """One publisher per process (made after fork), on the current Celery app."""
    global _publisher
    if _publisher is None or _publisher[0] != os.getpid():
        from celery import current_app

        _publisher = (os.getpid(), Publisher(current_app._get_current_object()))
    return _publisher[1]


def row_message(row: dict[str, Any]) -> OutgoingMessage:
    """The message of a run read back from `executions` with its schedule's options (left
    out when they can no longer be sent, so the run still goes)."""
    options = row.get("options") if isinstance(row.get("options"), dict) else {}
    try:
        check_options(options or {})
    except InvalidScheduleError as exc:
        log.warning("run %s goes out without its schedule's options: %s", row["id"], exc)
        options = {}
    return OutgoingMessage(
        execution_id=str(row["id"]),
        task=row["task"],
        args=list(row["args"] or []),
        kwargs=dict(row["kwargs"] or {}),
        options=dict(options or {}),
    )


async def follow_up(
    driver: Any,
    schedule_ids: Sequence[int | None],
    *,
    failed: bool,
    publisher: Publisher | None,
) -> list[uuid.UUID]:
    """Inside the caller's transaction (on its asyncpg connection), after outcomes of runs
    of `schedule_ids` were written: pause on failures, release buffered runs. Returns the
    ids of the runs released. Without a publisher nothing is released (the sweep will)."""
    ids = [sid for sid in schedule_ids if sid is not None]
    released: list[uuid.UUID] = []
    for schedule_id in await FollowUpStore.lock_for_follow_up(driver, ids, failed=failed):
        if failed:
            paused = await FollowUpStore.pause_after_failures(
                driver, schedule_id, actor=AUTO_PAUSE_ACTOR
            )
            if paused is not None:
                log.warning("schedule %s %s", paused[0], paused[1])
        if publisher is None:
            continue
        row = await FollowUpStore.take_buffered_run(driver, schedule_id)
        if row is None:
            continue
        try:
            publisher.publish([row_message(row)])
        except Exception as exc:  # the outcome must not be lost with the broker
            log.warning("buffered run %s stays pending for the sweep: %s", row["id"], exc)
            continue
        await FollowUpStore.mark_released(driver, [row["id"]])
        released.append(row["id"])
    return released


async def finish_run(
    driver: Any,
    execution_id: uuid.UUID | str,
    *,
    status_id: int,
    publisher: Publisher | None = None,
    tables: RunTables | None = None,
    **outcome: Any,
) -> bool:
    """The worker's outcome write (`RunStore.finish_run_returning`) and its follow-up.

    A failure is written in the same transaction as its follow-up; another outcome (the
    common case) stays one statement, followed by a transaction only for a `buffer_one`
    schedule. True when the row changed. `tables` names the run's partition for the one
    statement (see scheduler.store.run_tables)."""
    if status_id in FAILURE_STATUS_IDS:
        async with driver.transaction():
            done = await RunStore.finish_run_returning(
                driver, execution_id, status_id=status_id, **outcome
            )
            if done is not None and done[1]:
                await follow_up(
                    driver, [done[0]], failed=True, publisher=publisher or process_publisher()
                )
        return done is not None
    done = await RunStore.finish_run_returning(
        driver, execution_id, status_id=status_id, tables=tables, **outcome
    )
    if done is not None and done[1] and ExecutionStatus.from_id(status_id).is_terminal:
        async with driver.transaction():
            await follow_up(
                driver, [done[0]], failed=False, publisher=publisher or process_publisher()
            )
    return done is not None


async def finish_successes(
    driver: Any,
    outcomes: Sequence[tuple[str, dict[str, Any]]],
    *,
    publisher: Publisher | None = None,
    tables: RunTables | None = None,
) -> int:
    """`finish_run` for several successes at once (see `scheduler.worker.successes`): one
    statement per partition, then one follow-up transaction for the `buffer_one`
    schedules among them. Returns how many rows changed."""
    changed = await RunStore.finish_successes(driver, outcomes, tables=tables)
    buffered = [schedule_id for schedule_id, due in changed if due]
    if buffered:
        async with driver.transaction():
            await follow_up(
                driver, buffered, failed=False, publisher=publisher or process_publisher()
            )
    return len(changed)


async def finish_outside_run(execution_id: str, values: dict[str, Any]) -> int:
    """An outcome learnt outside the run (hard time limit, lost child, revoke), written from
    any live state, with its follow-up, in one transaction of its own."""
    from scheduler.runtime.db import get_runtime

    status = ExecutionStatus.from_id(int(values["status_id"]))
    async with get_runtime().sessions() as session, session.begin():
        changed = await RunStore.finish_execution(
            session, execution_id, values, from_any_live_state=True
        )
        if changed and status.is_terminal:
            found = await RunStore.get_execution(session, execution_id)
            if found is not None and found.schedule_id is not None:
                driver = await RunStore.driver_connection(await session.connection())
                await follow_up(
                    driver,
                    [found.schedule_id],
                    failed=status.id in FAILURE_STATUS_IDS,
                    publisher=process_publisher(),
                )
    return changed
