"""RedBeat anchor for the scale benchmark: idle tick and beat RSS with n entries, none due.

Entries are written straight into Redis in RedBeat's own storage format (what
`RedBeatSchedulerEntry.save()` writes), pipelined in chunks, so 100k entries take seconds
rather than minutes. Each entry is the hash `<key_prefix><name>` with the fields
`definition` and `meta` (JSON via `RedBeatJSONEncoder`) and a member of the sorted set
`redbeat_conf.schedule_key`, scored with `RedBeatSchedulerEntry.score` (the entry's next due
time as a UNIX timestamp).

The idle tick is measured in-process on `config.celery:app`. The RSS is read from a real
`celery beat -S redbeat.RedBeatScheduler` process, which runs `-A benchmarks.redbeat_anchor:app`:
`app` is built on first access (so importing this module has no side effects) from
`config.celery:app`, with the RedBeat settings taken from the `BROKER_URL` environment variable
and a 1 s loop interval so the beat keeps ticking while it is measured.

The Redis database behind `broker_url` is assumed to be throwaway: it is flushed before and after.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.processes import rss_mb, stop

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 5000
TICKS = 30
SETTLE_S = 6.0


def configure_redbeat(app: Any, broker_url: str) -> None:
    """Point RedBeat at `broker_url`, without a lock, and quieten its logging."""
    app.conf.redbeat_redis_url = broker_url
    app.conf.redbeat_lock_key = None
    for name in ("redbeat_conf", "redbeat_redis"):  # RedBeat caches both on the app
        if hasattr(app, name):
            delattr(app, name)
    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    logging.getLogger("redbeat").setLevel(logging.WARNING)


def __getattr__(name: str) -> Any:
    """`app` for the beat subprocess: the project's app, configured for RedBeat."""
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


def flush(broker_url: str) -> None:
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        client.flushdb()
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


def beat_rss_mb(broker_url: str, workdir: Path) -> float:
    """VmRSS of a RedBeat beat process after its startup and a few ticks."""
    log = workdir / "redbeat-beat.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "benchmarks.redbeat_anchor:app",
        "beat",
        "-S",
        "redbeat.RedBeatScheduler",
        "-l",
        "WARNING",
        "--schedule",
        str(workdir / "rb-schedule"),
    ]
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "BROKER_URL": broker_url},
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


def redbeat_scale(broker_url: str, n: int, workdir: Path) -> dict[str, float]:
    """Returns {"redbeat_idle_tick_ms_p50": ..., "redbeat_rss_mb": ...} for n entries none of
    which is due."""
    from config.celery import app

    configure_redbeat(app, broker_url)
    flush(broker_url)
    try:
        write_entries(app, n, datetime.now(UTC))
        idle = idle_tick_ms(app)
        rss = beat_rss_mb(broker_url, workdir)
    finally:
        flush(broker_url)
    return {"redbeat_idle_tick_ms_p50": idle, "redbeat_rss_mb": rss}
