"""Runs whose worker died end as `lost`.

A run is lost when:
- its worker process is gone: on this host, its pid no longer exists; on any host, the
  Celery node that ran it (seen answering `inspect().stats()` before) stops answering, or
  answers without that process among its own, in consecutive inspections;
- or it has stayed `running` past its hard time limit plus a margin (any host).

Runs of tasks that use `acks_late` + `reject_on_worker_lost` are redelivered by the broker
and claimed again; the reaper only catches those still running past the limit. Nodes that
never answered (started with `--without-control`) are judged by the time limit alone.

Runs no worker claims (`judge_queued`): a run `queued` past its bound (`queued_timeout_s`)
while its destination queue holds no message waiting is published again with the same task
id (a second delivery of a claimed run runs nothing); one still unclaimed `queued_lost_after_s`
after it was written, its queue empty again, ends `lost`. While the queue holds messages the
run is taken to be waiting in a backlog (or for a worker of that queue to start) and is left
alone, however long that takes.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import get_settings
from scheduler.broker.publisher import Publisher
from scheduler.store.runs import RunStore
from scheduler.worker.followup import follow_up

log = logging.getLogger(__name__)

Snapshot = dict[str, frozenset[int]]
"""Node name -> the pids of its processes (main process and pool), as one inspection saw."""


def split_worker(worker: str | None) -> tuple[str, str, int] | None:
    """`node:pid` (node `name@host`, or a bare host outside a worker) -> (node, host, pid)."""
    if not worker or ":" not in worker:
        return None
    node, _, pid_text = worker.rpartition(":")
    if not pid_text.isdigit():
        return None
    return node, node.rpartition("@")[2], int(pid_text)


def _pid_gone(worker: str | None, host: str) -> bool:
    parts = split_worker(worker)
    if parts is None or parts[1] != host:
        return False
    try:
        os.kill(parts[2], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class WorkerWatch:
    """What Celery nodes say about their processes, over the last few inspections.

    `observe()` asks every node for `inspect().stats()` (its pid and its pool's pids); a
    worker process counts as gone when its node, once seen, was absent or did not list the
    process in each of the last `misses` inspections. `refresh()` runs `observe()` in a
    background thread, so the beat never waits on the broadcast.
    """

    def __init__(self, app: Any, *, timeout_s: float = 1.0, misses: int = 2) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.misses = misses
        self._snapshots: collections.deque[Snapshot] = collections.deque(maxlen=misses)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def observe(self) -> bool:
        """One inspection; False (and nothing recorded) when the broker could not be asked."""
        try:
            replies = self.app.control.inspect(timeout=self.timeout_s).stats()
        except Exception as exc:
            log.warning("asking the workers which processes they run failed: %s", exc)
            return False
        snapshot: Snapshot = {}
        for node, stats in (replies or {}).items():
            pool = (stats or {}).get("pool") or {}
            pids = {int(p) for p in pool.get("processes") or [] if str(p).isdigit()}
            if str((stats or {}).get("pid", "")).isdigit():
                pids.add(int(stats["pid"]))
            snapshot[str(node)] = frozenset(pids)
        with self._lock:
            self._seen.update(snapshot)
            self._snapshots.append(snapshot)
        return True

    def refresh(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=self.observe, name="scheduler-worker-watch", daemon=True
        )
        self._thread.start()

    def gone(self, worker: str | None) -> bool:
        parts = split_worker(worker)
        if parts is None:
            return False
        node, _, pid = parts
        with self._lock:
            if node not in self._seen or len(self._snapshots) < self.misses:
                return False
            return all(pid not in snapshot.get(node, frozenset()) for snapshot in self._snapshots)


async def reap_lost(
    session: AsyncSession,
    *,
    now: datetime,
    time_limits_s: Mapping[str, float] | None = None,
    grace_s: float = 10.0,
    watch: WorkerWatch | None = None,
    publisher: Publisher | None = None,
) -> int:
    """Mark lost runs; returns how many. `time_limits_s`: hard limit per task name. In the
    same transaction, schedules whose runs were lost may pause themselves after failures,
    and (with a `publisher`) a `buffer_one` schedule's buffered run is released."""
    settings = get_settings()
    host = socket.gethostname()
    limits = time_limits_s or {}
    dead: list[uuid.UUID] = []
    overdue: list[uuid.UUID] = []
    for row in await RunStore.running_executions(session):
        started = row["started_at"]
        if started is None:
            continue
        age_s = (now - started).total_seconds()
        if age_s > grace_s and (
            _pid_gone(row["worker"], host) or (watch is not None and watch.gone(row["worker"]))
        ):
            dead.append(row["id"])
            continue
        limit = limits.get(row["task"])
        if limit and now - started > timedelta(seconds=limit + settings.worker_lost_margin_s):
            overdue.append(row["id"])
    schedules = await RunStore.mark_lost_returning(
        session, dead, now=now, reason="the worker process is gone"
    )
    schedules += await RunStore.mark_lost_returning(
        session,
        overdue,
        now=now,
        reason="still running past its hard time limit",
    )
    if any(sid is not None for sid in schedules):
        driver = await RunStore.driver_connection(await session.connection())
        await follow_up(driver, schedules, failed=True, publisher=publisher)
    return len(schedules)


@dataclass(frozen=True)
class QueuedRun:
    """A run `queued` past its bound, as the beat's check sees it."""

    id: uuid.UUID
    queue: str
    queued_at: datetime
    """When it was last confirmed on the broker (published or published again)."""
    created_at: datetime
    timeout_s: float
    lost_after_s: float


@dataclass(frozen=True)
class QueuedVerdict:
    republish: list[uuid.UUID]
    lost: list[uuid.UUID]
    waiting: int
    """Runs left alone: their queue holds messages (a backlog, or no worker for it yet)."""


def judge_queued(
    runs: Sequence[QueuedRun], depths: Mapping[str, int | None], *, now: datetime
) -> QueuedVerdict:
    """Pure: what to do with unclaimed `queued` runs. A queue whose depth cannot be told
    (None) counts as holding messages: nothing is republished or lost on a guess."""
    republish: list[uuid.UUID] = []
    lost: list[uuid.UUID] = []
    waiting = 0
    for run in runs:
        depth = depths.get(run.queue)
        if depth is None or depth > 0:
            waiting += 1
            continue
        if (now - run.queued_at).total_seconds() < run.timeout_s:
            continue
        if (now - run.created_at).total_seconds() >= run.lost_after_s:
            lost.append(run.id)
        else:
            republish.append(run.id)
    return QueuedVerdict(republish, lost, waiting)
