"""What an outcome sets off, in its transaction: auto-pause after failures, the release of a
held `buffer_one` run. Plain SQL on the asyncpg connection; the schedule row is locked
first, so two outcomes of one schedule are judged one after the other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from scheduler.core.domain import ExecutionStatus
from scheduler.store.common import FAILURE_STATUS_IDS

_LOCK_FOLLOW_UP_SQL = (
    "SELECT id FROM schedules WHERE id = ANY($1::bigint[]) AND (overlap_policy = 'buffer_one'"
    " OR (pause_after_failures IS NOT NULL AND enabled AND $2)) ORDER BY id FOR NO KEY UPDATE"
)


_AUTO_PAUSE_SQL = (
    "UPDATE schedules s SET enabled = false, paused_by = $2, paused_at = now(),"
    " paused_reason = 'paused after ' || s.pause_after_failures"
    " || ' consecutive failures (last: ' || r.last_error || ')'"
    " FROM (SELECT count(*) FILTER (WHERE t.status_id <> "
    f"{ExecutionStatus.SUCCESS.id}) AS failures,"
    " (array_agg(t.error ORDER BY t.created_at DESC))[1] AS last_error"
    " FROM (SELECT e.status_id, e.created_at, left(split_part(coalesce(e.error_message,"
    " e.error_type, 'no error recorded'), E'\\n', 1), 200) AS error"
    " FROM executions e JOIN schedules p ON p.id = e.schedule_id"
    " WHERE e.schedule_id = $1 AND e.status_id = ANY($3::smallint[])"
    " AND e.completed_at >= p.updated_at ORDER BY e.created_at DESC"
    " LIMIT (SELECT pause_after_failures FROM schedules WHERE id = $1)) t) r"
    " WHERE s.id = $1 AND s.enabled AND s.pause_after_failures IS NOT NULL"
    " AND r.failures >= s.pause_after_failures RETURNING s.name, s.paused_reason"
)


_RELEASE_SQL = (
    "SELECT e.id, e.task, e.args, e.kwargs, e.schedule_id, s.options"
    " FROM executions e JOIN schedules s ON s.id = e.schedule_id"
    f" WHERE e.schedule_id = $1 AND e.status_id = {ExecutionStatus.PENDING.id}"
    " AND s.overlap_policy = 'buffer_one' AND NOT EXISTS (SELECT 1 FROM executions o"
    " WHERE o.schedule_id = $1 AND o.status_id = ANY($2::smallint[]))"
    " ORDER BY e.created_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED"
)


_MARK_QUEUED_SQL = (
    f"UPDATE executions SET queued_at = now(), status_id = {ExecutionStatus.QUEUED.id}"
    f" WHERE id = ANY($1::uuid[]) AND status_id = {ExecutionStatus.PENDING.id}"
)


class FollowUpStore:
    """Follow-ups of an outcome. Stateless: every method is static and takes the caller's
    session or connection; none commits."""

    @staticmethod
    async def lock_for_follow_up(
        driver: Any, schedule_ids: Sequence[int], *, failed: bool
    ) -> list[int]:
        """Lock (in id order) the schedules an outcome may act on; returns their ids."""
        if not schedule_ids:
            return []
        rows = await driver.fetch(_LOCK_FOLLOW_UP_SQL, sorted(set(schedule_ids)), failed)
        return [int(r["id"]) for r in rows]

    @staticmethod
    async def pause_after_failures(
        driver: Any, schedule_id: int, *, actor: str
    ) -> tuple[str, str] | None:
        """Pause the (locked) schedule when its last `pause_after_failures` terminal runs
        since it was last edited or resumed all failed (failed, timeout, lost; successes
        break the streak; skipped, missed and revoked runs do not count). Returns (name,
        reason) when this call paused it; an already paused schedule is left alone."""
        row = await driver.fetchrow(
            _AUTO_PAUSE_SQL,
            schedule_id,
            actor,
            [ExecutionStatus.SUCCESS.id, *FAILURE_STATUS_IDS],
        )
        return None if row is None else (str(row["name"]), str(row["paused_reason"]))

    @staticmethod
    async def take_buffered_run(driver: Any, schedule_id: int) -> dict[str, Any] | None:
        """The run a `buffer_one` schedule holds back (its oldest `pending` run), locked, when
        no run of the schedule is queued, running or retrying any more; else None."""
        row = await driver.fetchrow(
            _RELEASE_SQL,
            schedule_id,
            [ExecutionStatus.QUEUED.id, ExecutionStatus.RUNNING.id, ExecutionStatus.RETRYING.id],
        )
        if row is None:
            return None
        values = dict(row)
        for key in ("args", "kwargs", "options"):
            if isinstance(values[key], str):
                values[key] = json.loads(values[key])
        return values

    @staticmethod
    async def mark_released(driver: Any, execution_ids: Sequence[uuid.UUID]) -> int:
        """Released runs confirmed on the broker: `queued`."""
        if not execution_ids:
            return 0
        status = await driver.execute(_MARK_QUEUED_SQL, list(execution_ids))
        return int(str(status).rsplit(" ", 1)[-1])
