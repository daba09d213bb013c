"""The outbox: runs written but not on the broker, and runs on it that no worker took.

- `pending` rows older than the sweep delay (a beat died between commit and publish, or the
  publish failed) are published again with the same task id; those written ahead of a
  schedule since disabled or removed are withdrawn instead;
- after a broker outage, runs queued shortly before it are published again;
- `queued` rows past their bound that no worker claimed are published again, or end `lost`
  after the longer bound (left alone while their queue still holds messages: `judge_queued`).

Any beat's outbox handles any beat's rows: the rows are locked `SKIP LOCKED`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.beat.delivery import Delivery
from scheduler.beat.messages import row_message
from scheduler.beat.reaper import QueuedRun, judge_queued
from scheduler.observability import metrics
from scheduler.runtime import clock
from scheduler.store.dispatch import DispatchStore
from scheduler.store.outbox import OutboxStore

log = logging.getLogger(__name__)
REPUBLISH_LIMIT = 100_000


class Outbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        delivery: Delivery,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.delivery = delivery
        self.settings = settings

    async def sweep(self, now: datetime) -> int:
        """Republish rows left `pending` longer than the sweep delay, with the same task id;
        runs written ahead whose schedule was since disabled or removed are withdrawn. After
        a broker outage, runs queued shortly before it are published again."""
        republished = await self._sweep_pending(now)
        if self.delivery.broker_lost_since is not None:
            await self._republish_queued(self.delivery.broker_lost_since)
        return republished

    async def _republish_queued(self, since: datetime) -> int:
        async with self.sessions() as session:
            rows = await OutboxStore.queued_since(session, since=since, limit=REPUBLISH_LIMIT)
        await self.delivery.publish([row_message(r) for r in rows])
        self.delivery.broker_lost_since = None
        if rows:
            log.info(
                "broker back: published again %d runs queued since %s (duplicates run nothing)",
                len(rows),
                since.isoformat(timespec="seconds"),
            )
        return len(rows)

    async def _sweep_pending(self, now: datetime) -> int:
        cutoff = now - timedelta(seconds=self.settings.beat_sweep_after_s)
        async with self.sessions() as session, session.begin():
            found = await OutboxStore.lock_stale_pending(
                session, older_than=cutoff, limit=self.settings.beat_max_batch
            )
            withdrawn = await DispatchStore.withdraw_runs(
                session, [r["id"] for r in found if r["withdraw"]]
            )
            metrics.runs_withdrawn(withdrawn)
            if withdrawn:
                log.info("sweep withdrew %d runs written ahead of a disabled schedule", withdrawn)
            rows = [r for r in found if not r["withdraw"]]
            if not rows:
                return 0
            await self.delivery.publish([row_message(r) for r in rows])
            await OutboxStore.mark_queued(session, [r["id"] for r in rows], now=clock.now())
        log.info("sweep republished %d pending runs", len(rows))
        return len(rows)

    async def recover_queued(self, now: datetime) -> tuple[int, int]:
        """Runs `queued` past their bound that no worker claimed: published again with the same
        task id, or `lost` after the longer bound; left alone while their queue holds messages
        (see `judge_queued`). Returns (republished, lost)."""
        publisher = self.delivery.publisher
        async with self.sessions() as session, session.begin():
            rows = await OutboxStore.lock_stale_queued(
                session,
                now=now,
                timeout_s=self.settings.queued_timeout_s,
                lost_after_s=self.settings.queued_lost_after_s,
                limit=self.settings.beat_max_batch,
            )
            if not rows:
                return 0, 0
            messages = {r["id"]: row_message(r) for r in rows}
            runs = [
                QueuedRun(
                    id=r["id"],
                    queue=publisher.route(r["task"], messages[r["id"]].options).queue,
                    queued_at=r["queued_at"],
                    created_at=r["created_at"],
                    timeout_s=float(r["timeout_s"]),
                    lost_after_s=float(r["lost_after_s"]),
                )
                for r in rows
            ]
            depths = publisher.queue_depths(sorted({run.queue for run in runs}))
            verdict = judge_queued(runs, depths, now=now)
            if verdict.republish:
                await self.delivery.publish([messages[i] for i in verdict.republish])
                await OutboxStore.requeued(session, verdict.republish, now=clock.now())
            lost = await OutboxStore.mark_unclaimed_lost(
                session,
                verdict.lost,
                now=now,
                reason="no worker claimed it: queued past its bound, published again, its "
                "queue empty",
            )
        if verdict.republish:
            log.warning(
                "published again %d runs queued past their bound that no worker claimed "
                "(their queue was empty)",
                len(verdict.republish),
            )
        if lost:
            log.warning("marked %d runs lost: queued and never claimed by a worker", lost)
        return len(verdict.republish), lost
