"""Alerts: notification rules, their deliveries, and the beat's delivery loop.

A rule names schedules by glob, events, and a target (a webhook URL or a registered task).
Deliveries are rows of `notification_deliveries`, one per rule, event and run by a unique
constraint: run events are written by database triggers in the transaction that records the
run (see migration 0008), `stale` by the beat's check below, `paused` by a trigger when a
schedule's `enabled` turns false by anyone but the beat.

Every beat runs the delivery loop: it locks due rows (`FOR UPDATE SKIP LOCKED`, so two beats
never send one row at once), sends them, and marks each `sent`, or counts the attempt and
sets the next one after a capped exponential back-off. A row is never given up: a receiver
down for hours gets everything once it is back. The body of a delivery is the same bytes on
every attempt, signed with the rule's secret, and `X-Scheduler-Delivery` carries the row's
id: a receiver that saw an attempt whose answer was lost (the one case of a repeat: the
beat died after the send and before the commit) can tell.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.observability import database_series, metrics
from scheduler.runtime.retry import backoff_s
from scheduler.runtime.urls import redact
from scheduler.store.alerts import AlertStore
from scheduler.store.models import ALERT_EVENTS

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Scheduler-Signature"
DELIVERY_HEADER = "X-Scheduler-Delivery"
STALE_EVERY_S = 5.0
STALE_LIMIT = 1000
_REGEX_SPECIAL = set("\\.^$|?*+()[]{}")


def glob_regex(glob: str) -> str:
    """An anchored POSIX regular expression (PostgreSQL `~`) matching what `glob` matches:
    `*` any run of characters, `?` one, `[...]` a set; everything else literal."""
    out = ["^"]
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in glob[i + 1 :]:
            end = glob.index("]", i + 1)
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append("\\" + char if char in _REGEX_SPECIAL else char)
        i += 1
    out.append("$")
    return "".join(out)


def glob_matches(glob: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, glob)


def parse_events(text: str) -> list[str]:
    events = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in events if e not in ALERT_EVENTS]
    if unknown or not events:
        raise InvalidScheduleError(
            f"unknown event {', '.join(unknown) or '(none)'}: choose from {', '.join(ALERT_EVENTS)}"
        )
    return list(dict.fromkeys(events))


def body_bytes(payload: dict[str, Any], web_url: str | None) -> bytes:
    """The webhook body: the event's fields and a link to the run, the same on every try."""
    execution_id = payload.get("execution_id")
    url = f"{web_url.rstrip('/')}/runs/{execution_id}" if web_url and execution_id else None
    body = {**payload, "url": url}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return header is not None and hmac.compare_digest(signature(body, secret), header)


@dataclass(frozen=True)
class Outcome:
    sent: bool
    error: str | None


def post_webhook(
    url: str, body: bytes, *, delivery_id: str, secret: str | None, timeout_s: float
) -> Outcome:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "celery-db-scheduler",
        DELIVERY_HEADER: delivery_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        return Outcome(False, f"HTTP {exc.code}")
    except Exception as exc:
        return Outcome(False, redact(f"{type(exc).__name__}: {exc}")[:500])
    return Outcome(200 <= code < 300, None if 200 <= code < 300 else f"HTTP {code}")


SendTask = Callable[[str, dict[str, Any], str], None]
"""(task name, event body, delivery id): publish the task with the delivery id as task id."""


class Deliverer:
    """Sends due deliveries; one batch per call, each row locked while it is sent."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        send_task: SendTask | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.send_task = send_task

    async def deliver_due(self) -> int:
        """Send one batch; returns how many rows were tried."""
        async with self.sessions() as session, session.begin():
            rows = await AlertStore.lock_due_deliveries(session, limit=self.settings.alerts_batch)
            if not rows:
                return 0
            loop = asyncio.get_running_loop()
            outcomes = await asyncio.gather(
                *(loop.run_in_executor(None, self._send, row) for row in rows)
            )
            for row, outcome in zip(rows, outcomes, strict=True):
                retry = backoff_s(row["attempts"] + 1, self.settings.alerts_retry_max_s)
                await AlertStore.mark_delivery(
                    session, row["id"], sent=outcome.sent, error=outcome.error, retry_in_s=retry
                )
                if not outcome.sent:
                    log.warning(
                        "alert %s (%s) not delivered, attempt %d: %s; next try in %.0f s",
                        row["id"],
                        row["event"],
                        row["attempts"] + 1,
                        outcome.error,
                        retry,
                    )
        return len(rows)

    def _send(self, row: dict[str, Any]) -> Outcome:
        delivery_id = str(row["id"])
        body = body_bytes(dict(row["payload"]), self.settings.web_url)
        if row["webhook_url"]:
            return post_webhook(
                row["webhook_url"],
                body,
                delivery_id=delivery_id,
                secret=row["secret"],
                timeout_s=self.settings.alerts_timeout_s,
            )
        if self.send_task is None:
            return Outcome(False, "no Celery app to send the task with")
        try:
            self.send_task(str(row["task"]), json.loads(body), delivery_id)
        except Exception as exc:
            return Outcome(False, redact(f"{type(exc).__name__}: {exc}")[:500])
        return Outcome(True, None)

    async def check_stale(self) -> int:
        async with self.sessions() as session, session.begin():
            return await AlertStore.insert_stale(session, limit=STALE_LIMIT)


async def send_test(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    rule_name: str,
    send_task: SendTask | None = None,
) -> tuple[uuid.UUID, Outcome] | None:
    """Record a `test` delivery of rule `rule_name` and send it at once (a failed one is
    retried by the beats like any other). None when there is no such rule."""
    async with sessions() as session, session.begin():
        rule = await AlertStore.get_rule(session, rule_name)
        if rule is None:
            return None
        payload = {
            "event": "test",
            "rule": rule_name,
            "schedule": None,
            "execution_id": None,
            "status": "test",
            "scheduled_for": None,
            "error_message": None,
        }
        delivery_id = await AlertStore.insert_delivery(
            session,
            {
                "rule_id": rule["id"],
                "event": "test",
                "event_key": f"test:{uuid.uuid4()}",
                "payload": payload,
            },
        )
    deliverer = Deliverer(sessions, settings, send_task)
    outcome = await asyncio.get_running_loop().run_in_executor(
        None, deliverer._send, {**rule, "id": delivery_id, "payload": payload}
    )
    async with sessions() as session, session.begin():
        await AlertStore.mark_delivery(
            session,
            delivery_id,
            sent=outcome.sent,
            error=outcome.error,
            retry_in_s=backoff_s(1, settings.alerts_retry_max_s),
        )
    return delivery_id, outcome


class Observer:
    """The beat's background duties on its event loop, beside the passes: send alert
    deliveries (every `alerts_poll_s`), look for stale schedules and read the database
    series of the metrics (every few seconds). Errors are logged and retried next round."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        send_task: SendTask | None = None,
        deliver: bool = True,
    ) -> None:
        self.loop = loop
        self.sessions = sessions
        self.settings = settings
        self.deliverer = Deliverer(sessions, settings, send_task) if deliver else None
        self._stopping = False
        self._future: Future[None] | None = None

    def start(self) -> Observer:
        self._future = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        if self._future is not None:
            try:
                self._future.result(timeout=timeout_s)
            except Exception:
                self._future.cancel()

    async def _run(self) -> None:
        last_stale = last_refresh = 0.0
        while not self._stopping:
            clock = time.monotonic()
            source = database_series.database_metrics()
            every_s = max(self.settings.metrics_refresh_s, 10 * source.refresh_s)
            if metrics.enabled() and clock - last_refresh >= every_s:
                last_refresh = clock
                await self._guard("reading the metrics", self._refresh_metrics())
            if self.deliverer is not None:
                if clock - last_stale >= STALE_EVERY_S:
                    last_stale = clock
                    await self._guard("the stale check", self.deliverer.check_stale())
                await self._guard("sending alerts", self._deliver_all())
            await asyncio.sleep(self.settings.alerts_poll_s)

    async def _deliver_all(self) -> None:
        assert self.deliverer is not None
        for _ in range(20):  # bounded: at most 20 batches per round
            if await self.deliverer.deliver_due() < self.settings.alerts_batch:
                return

    async def _refresh_metrics(self) -> None:
        async with self.sessions() as session:
            await database_series.database_metrics().refresh(session)

    async def _guard(self, what: str, coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            log.warning(
                "%s failed: %s", what, redact(str(exc)).splitlines()[0] if str(exc) else exc
            )


def celery_send_task(app: Any) -> SendTask:
    def send(task: str, body: dict[str, Any], delivery_id: str) -> None:
        app.send_task(task, kwargs={"event": body}, task_id=delivery_id)

    return send


def rule_values(
    *,
    name: str,
    schedules: str,
    events: Sequence[str],
    webhook: str | None,
    task: str | None,
    secret: str | None,
    late_after_s: int | None,
    stale_after_s: int | None,
    only_final_attempt: bool,
) -> dict[str, Any]:
    if (webhook is None) == (task is None):
        raise InvalidScheduleError("give exactly one of --webhook URL or --task NAME")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise InvalidScheduleError(f"--webhook must be an http(s) URL, not {webhook!r}")
    if "late" in events and not late_after_s:
        raise InvalidScheduleError("event `late` needs --late-after-s N (N >= 1)")
    if "stale" in events and not stale_after_s:
        raise InvalidScheduleError("event `stale` needs --stale-after-s N (N >= 1)")
    for flag, value in (("--late-after-s", late_after_s), ("--stale-after-s", stale_after_s)):
        if value is not None and value < 1:
            raise InvalidScheduleError(f"{flag} must be at least 1")
    return {
        "name": name,
        "schedules": schedules,
        "schedules_regex": glob_regex(schedules),
        "events": list(events),
        "webhook_url": webhook,
        "task": task,
        "secret": secret,
        "late_after_s": late_after_s,
        "stale_after_s": stale_after_s,
        "only_final_attempt": only_final_attempt,
    }
