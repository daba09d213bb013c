"""The anchors every ratio is measured against, in the same run on the same machine.

- kombu: n prebuilt protocol-2 messages published in one producer batch on a held connection
  (the broker's own pace through kombu; `burst`).
- celery's PersistentScheduler and RedBeat, given the same n entries all due: time until all
  are on the broker (`burst`).
- RedBeat with n entries none due: its idle tick and the RSS of a real `celery beat -S
  redbeat.RedBeatScheduler` (`scale`).

(The `send_task` loop of `brokers` and the bare Celery / seed-pattern tasks of `workers` are
the other anchors; they live beside the broker and task plumbing they need.)

RedBeat's scale entries are written straight into Redis in its own storage format (what
`RedBeatSchedulerEntry.save()` writes), pipelined in chunks, so 100k entries take seconds
rather than minutes: each entry is the hash `<key_prefix><name>` with the fields `definition`
and `meta` (JSON via `RedBeatJSONEncoder`) and a member of the sorted set
`redbeat_conf.schedule_key`, scored with `RedBeatSchedulerEntry.score`. The RSS beat runs
`-A benchmarks.anchors:app`: `app` is built on first access (so importing this module has no
side effects) from `config.celery:app`, with the RedBeat settings taken from the `BROKER_URL`
environment variable and a 1 s loop interval so the beat keeps ticking while it is measured.

The Redis database behind the broker is assumed to be throwaway: it is flushed before and after.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.env import ROOT, Env
from benchmarks.processes import rss_mb, stop

CHUNK = 5000
TICKS = 30
SETTLE_S = 6.0


# --- kombu ---------------------------------------------------------------------------------


def kombu_batch_s(env: Env, n: int) -> float:
    """n prebuilt protocol-2 messages published by kombu in one producer batch on a held
    connection: seconds until the last is on the broker."""
    from config.celery import app

    env.flush_broker()
    built = [
        app.amqp.as_task_v2(str(uuid.uuid4()), "demo.noop", args=[], kwargs={"execution_id": "x"})
        for _ in range(n)
    ]
    with app.connection_for_write() as connection:
        producer = connection.Producer(serializer="json")
        producer.publish({}, exchange="", routing_key="warm-up", retry=False)
        start = time.perf_counter()
        with producer.batch(max_size=1000):
            for headers, properties, body, _ in built:
                producer.publish(
                    body, exchange="", routing_key="celery", headers=headers, retry=False,
                    **properties,
                )  # fmt: skip
        elapsed = time.perf_counter() - start
    assert env.queue_length() == n
    env.flush_broker()
    return elapsed


# --- celery's PersistentScheduler and RedBeat, all due ------------------------------------


def _ticks_until_sent(env: Env, scheduler: Any, n: int, bound_s: float = 120) -> float:
    """Tick a Celery scheduler until n messages are on the broker, then close it. Past
    `bound_s` the time is extrapolated from the rate reached."""
    start = time.perf_counter()
    while env.queue_length() < n and time.perf_counter() - start < bound_s:
        scheduler.tick()
    elapsed = time.perf_counter() - start
    sent = env.queue_length()
    scheduler.close()
    return elapsed * n / max(sent, 1)


def celery_beat_burst_s(env: Env, n: int) -> float:
    """celery's PersistentScheduler with n entries, all due: time until all are sent
    (bounded at 120 s; past that the time is extrapolated from the rate reached)."""
    from celery.beat import PersistentScheduler

    from config.celery import app

    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    env.flush_broker()
    schedule_file = env.tmp / f"celerybeat-{n}"
    app.conf.beat_schedule = {
        f"entry-{i}": {"task": "demo.noop", "schedule": 3600.0} for i in range(n)
    }
    try:
        scheduler = PersistentScheduler(app, schedule_filename=str(schedule_file), lazy=False)
        past = datetime.now(UTC) - timedelta(hours=2)
        for entry in scheduler.schedule.values():
            entry.last_run_at = past
        scheduler._heap = None
        return _ticks_until_sent(env, scheduler, n)
    finally:
        app.conf.beat_schedule = {}
        for path in env.tmp.glob(f"celerybeat-{n}*"):
            path.unlink()


def configure_redbeat(app: Any, broker_url: str) -> None:
    """Point RedBeat at `broker_url`, without a lock, and quieten its logging."""
    app.conf.redbeat_redis_url = broker_url
    app.conf.redbeat_lock_key = None
    for name in ("redbeat_conf", "redbeat_redis"):  # RedBeat caches both on the app
        if hasattr(app, name):
            delattr(app, name)
    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    logging.getLogger("redbeat").setLevel(logging.WARNING)


def redbeat_burst_s(env: Env, n: int) -> float:
    """RedBeat given the same n entries, all due: time until all are on the broker."""
    from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry

    from config.celery import app

    env.flush_broker()
    configure_redbeat(app, env.broker)
    for i in range(n):
        entry = RedBeatSchedulerEntry(f"rb-{i}", "demo.noop", timedelta(hours=1), app=app)
        entry.last_run_at = None
        entry.save()
    elapsed = _ticks_until_sent(env, RedBeatScheduler(app, lazy=False), n)
    env.flush_broker()
    return elapsed


# --- RedBeat, none due (scale) ------------------------------------------------------------


def __getattr__(name: str) -> Any:
    """`app` for the RedBeat beat subprocess: the project's app, configured for RedBeat."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from config.celery import app

    configure_redbeat(app, os.environ["BROKER_URL"])
    app.conf.beat_max_loop_interval = 1.0
    globals()["app"] = app
    return app


def write_entries(app: Any, n: int, last_run_at: datetime) -> None:
    """Store n interval entries (`rb-<i>`, demo.noop, every hour) as `save()` would."""
    import redis
    from celery.schedules import schedule
    from redbeat.decoder import RedBeatJSONEncoder, to_timestamp
    from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf

    conf = ensure_conf(app)
    every = schedule(run_every=3600, app=app)
    meta = json.dumps({"last_run_at": last_run_at}, cls=RedBeatJSONEncoder)
    # RedBeatSchedulerEntry.due_at / score, the same for every entry
    score = to_timestamp(last_run_at + every.remaining_estimate(last_run_at))
    client = redis.Redis.from_url(conf.redis_url)
    try:
        for start in range(0, n, CHUNK):
            scores: dict[str, int] = {}
            with client.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + CHUNK, n)):
                    name = f"rb-{i}"
                    definition = {
                        "name": name,
                        "task": "demo.noop",
                        "args": None,
                        "kwargs": {},
                        "options": {},
                        "schedule": every,
                        "enabled": True,
                    }
                    key = RedBeatSchedulerEntry.generate_key(app, name)
                    encoded = json.dumps(definition, cls=RedBeatJSONEncoder)
                    pipe.hset(key, mapping={"definition": encoded, "meta": meta})
                    scores[key] = score
                pipe.zadd(conf.schedule_key, scores)
                pipe.execute()
    finally:
        client.close()


def idle_tick_ms(app: Any) -> float:
    """Median of RedBeat ticks with nothing due (ms)."""
    from redbeat.schedulers import RedBeatScheduler

    scheduler = RedBeatScheduler(app, lazy=False)
    try:
        samples = []
        for _ in range(TICKS):
            start = time.perf_counter()
            scheduler.tick()
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        scheduler.close()
    return statistics.median(samples)


def beat_rss_mb(env: Env) -> float:
    """VmRSS of a RedBeat beat process after its startup and a few ticks."""
    log = env.tmp / "redbeat-beat.log"
    command = [
        sys.executable, "-m", "celery", "-A", "benchmarks.anchors:app", "beat",
        "-S", "redbeat.RedBeatScheduler", "-l", "WARNING", "--schedule", str(env.tmp / "rb-schedule"),
    ]  # fmt: skip
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "BROKER_URL": env.broker},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        time.sleep(SETTLE_S)
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"RedBeat beat exited with {proc.returncode}:\n{tail}")
        return rss_mb(proc.pid)
    finally:
        stop(proc)


def redbeat_scale(env: Env, n: int) -> dict[str, float]:
    """Returns {"redbeat_idle_tick_ms_p50": ..., "redbeat_rss_mb": ...} for n entries none of
    which is due."""
    from config.celery import app

    configure_redbeat(app, env.broker)
    env.flush_broker()
    try:
        write_entries(app, n, datetime.now(UTC))
        idle = idle_tick_ms(app)
        rss = beat_rss_mb(env)
    finally:
        env.flush_broker()
    return {"redbeat_idle_tick_ms_p50": idle, "redbeat_rss_mb": rss}
