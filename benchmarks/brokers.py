"""Burst and steady load on each broker (Redis, RabbitMQ), anchored on `send_task`.

Anchor: Celery's `send_task` in a loop with one held producer, to the same broker and queue
(what an application sending n tasks itself would do), timed until the broker holds all n.
Ours: a running beat, n schedules due at one instant; seconds from that instant until the
last run was confirmed by the broker (its `queued_at`, written after the confirmation: the
Redis pipeline reply, RabbitMQ's publisher confirms).

RabbitMQ comes from BENCH_AMQP_URL (or TEST_AMQP_URL); without one its rows are skipped. The
burst runs on RabbitMQ twice: persistent messages (the default) and transient ones
(SCHEDULER_BROKER_DELIVERY_MODE=transient, the loop's messages transient too).
Each benchmark uses a queue of its own, deleted afterwards.
"""

from __future__ import annotations

import importlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from benchmarks.burst import last_queued_s
from benchmarks.env import Env, run, sql, start_beat
from benchmarks.processes import stop
from benchmarks.sustained import steady_lags

Connection: Any = importlib.import_module("kombu").Connection


def amqp_url() -> str | None:
    return os.environ.get("BENCH_AMQP_URL") or os.environ.get("TEST_AMQP_URL")


class Broker:
    """One broker and one queue of the benchmark's own."""

    def __init__(self, kind: str, url: str, delivery_mode: str = "persistent") -> None:
        self.kind = kind
        self.url = url
        self.delivery_mode = delivery_mode
        self.queue = f"bench-{uuid.uuid4().hex[:10]}"
        self._redis: Any = None
        self._connection: Any = None
        self._channel: Any = None

    @property
    def label(self) -> str:
        transient = self.kind == "rabbitmq" and self.delivery_mode == "transient"
        return f"{self.kind} transient" if transient else self.kind

    def depth(self) -> int:
        """Messages in the queue, asked over one held connection (polling every few ms, a
        connection per question was load on the broker of its own)."""
        if self.kind == "redis":
            if self._redis is None:
                self._redis = redis.Redis.from_url(self.url)
            return int(self._redis.llen(self.queue))
        if self._channel is None:
            self._connection = Connection(self.url)
            self._channel = self._connection.channel()
        try:
            _, count, _ = self._channel.queue_declare(queue=self.queue, passive=True)
        except Exception:  # not declared yet: the broker closed the channel
            self.close()
            return 0
        return int(count)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._connection is not None:
            self._connection.release()
            self._connection = self._channel = None

    def drop(self) -> None:
        self.close()
        if self.kind == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                client.delete(self.queue)
            finally:
                client.close()
            return
        with Connection(self.url) as connection:
            channel = connection.channel()
            try:
                channel.queue_delete(self.queue)
            except Exception:  # never declared
                return
            connection.channel().exchange_delete(self.queue)

    def purge(self) -> None:
        if self.kind == "redis":
            self.drop()
            return
        with Connection(self.url) as connection:
            try:
                connection.channel().queue_purge(self.queue)
            except Exception:  # not declared yet
                return


def _app_on(url: str, delivery_mode: str = "persistent") -> Any:
    from config.celery import app

    app.conf.broker_url = url
    app.conf.task_default_delivery_mode = delivery_mode
    return app


def send_task_loop_s(broker: Broker, n: int, bound_s: float = 60) -> float:
    """`send_task` n times with one held producer; seconds until the broker holds all n.
    Past `bound_s` the time is extrapolated from the rate reached."""
    app = _app_on(broker.url, broker.delivery_mode)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with app.connection_for_write() as connection:
        producer = connection.Producer()
        app.send_task("demo.noop", task_id=str(uuid.uuid4()), queue=broker.queue, producer=producer)
        while broker.depth() < 1:
            time.sleep(0.01)
        broker.purge()
        start = time.perf_counter()
        sent = 0
        for execution_id in ids:
            app.send_task(
                "demo.noop",
                kwargs={"execution_id": execution_id},
                task_id=execution_id,
                queue=broker.queue,
                producer=producer,
            )
            sent += 1
            if sent % 100 == 0 and time.perf_counter() - start > bound_s:
                break
        while broker.depth() < sent:
            if time.perf_counter() - start > bound_s + 60:
                raise RuntimeError("send_task: messages did not arrive")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    broker.purge()
    return elapsed * n / sent


def beat_due_s(env: Env, broker: Broker, n: int, lookahead_s: float = 2.0) -> float:
    """n schedules due at one instant T, a beat running: seconds from T until the broker
    confirmed the last of them. With the default lookahead (2 s) writing the 10k rows
    ahead does not finish before T on a small machine; with a longer one every run is
    written and its message built ahead, and T costs only the publish and its confirmation."""
    url = env.fresh_database()
    log = env.tmp / f"beat-{broker.kind}-{broker.delivery_mode}-{n}.log"
    beat = start_beat(
        env, url, log, broker_url=broker.url, SCHEDULER_BEAT_LOOKAHEAD_S=str(lookahead_s),
        SCHEDULER_BROKER_DELIVERY_MODE=broker.delivery_mode,
    )  # fmt: skip
    try:
        time.sleep(3)
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5 + lookahead_s)
        run(
            sql(
                url,
                "INSERT INTO schedules (name, task, interval_seconds, start_at, options) "
                "SELECT 'due-' || i, 'demo.noop', 3600, $1, $3::jsonb "
                "FROM generate_series(1, $2) i",
                due,
                n,
                f'{{"queue": "{broker.queue}"}}',
            )
        )
        deadline = time.monotonic() + 60
        while broker.depth() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the last batch's `queued` update
    finally:
        stop(beat)
    seconds = last_queued_s(url, n, due)
    broker.purge()
    return seconds


def steady(env: Env, broker: Broker, duration_s: int) -> dict[str, Any]:
    """1k every-second + 1k every-minute schedules: lag = queued_at - scheduled_for."""
    url = env.fresh_database()
    start_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    run(
        sql(
            url,
            "INSERT INTO schedules (name, task, interval_seconds, start_at, options) "
            "SELECT 'sec-' || i, 'demo.noop', 1, $1::timestamptz, $2::jsonb "
            "FROM generate_series(1, 1000) i UNION ALL "
            "SELECT 'min-' || i, 'demo.noop', 60, $1::timestamptz, $2::jsonb "
            "FROM generate_series(1, 1000) i",
            start_at,
            f'{{"queue": "{broker.queue}"}}',
        )
    )
    beat = start_beat(
        env, url, env.tmp / f"beat-steady-{broker.kind}.log", broker_url=broker.url,
        SCHEDULER_BEAT_LOOKAHEAD_S="2.0", SCHEDULER_BROKER_DELIVERY_MODE="persistent",
    )  # fmt: skip
    try:
        for _ in range(duration_s + 5):
            time.sleep(1)
            broker.purge()  # nobody consumes: keep the broker small
    finally:
        stop(beat)
    return {"broker": broker.kind, "seconds": duration_s, **steady_lags(url, start_at)}


def brokers(env: Env, *, transient: bool = False) -> list[Broker]:
    found = [Broker("redis", env.broker)]
    url = amqp_url()
    if url:
        found.append(Broker("rabbitmq", url))
        if transient:
            found.append(Broker("rabbitmq", url, "transient"))
    return found


def bench_broker_burst(env: Env, n: int) -> list[dict[str, Any]]:
    from config.celery import app

    original = app.conf.broker_url
    rows = []
    try:
        for broker in brokers(env, transient=True):
            try:
                loop_s = send_task_loop_s(broker, n)
                due_s = beat_due_s(env, broker, n)
                ahead_s = beat_due_s(env, broker, n, lookahead_s=15.0)
            finally:
                _app_on(original)
                broker.drop()
            rows.append(
                {
                    "broker": broker.label,
                    "n": n,
                    "send_task_loop_s": round(loop_s, 3),
                    "ours_due_confirmed_s": round(due_s, 3),
                    "speedup_vs_send_task": round(loop_s / due_s, 2),
                    "ours_lookahead_15s_confirmed_s": round(ahead_s, 3),
                    "lookahead_15s_speedup": round(loop_s / ahead_s, 2),
                }
            )
    finally:
        _app_on(original)
    return rows


def bench_broker_steady(env: Env, duration_s: int) -> list[dict[str, Any]]:
    rows = []
    for broker in brokers(env):
        try:
            rows.append(steady(env, broker, duration_s))
        finally:
            broker.drop()
    return rows
