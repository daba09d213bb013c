"""Process settings, read from the environment (and a `.env` file when present).

Standard names stay standard (`DATABASE_URL`, `BROKER_URL`, `RESULT_BACKEND`); every
other option takes the `SCHEDULER_` prefix, e.g. `SCHEDULER_BEAT_MAX_BATCH=500`.
When `DATABASE_URL` / `BROKER_URL` are unset the embedded services are used.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCHEDULER_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "SCHEDULER_DATABASE_URL"),
        repr=False,
    )
    broker_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BROKER_URL", "SCHEDULER_BROKER_URL"),
        repr=False,
    )
    broker_master_name: str | None = None
    """The Redis Sentinel master to follow (Celery's `master_name` transport option); required
    with a `sentinel://` BROKER_URL."""
    broker_delivery_mode: Literal["persistent", "transient"] = "persistent"
    """RabbitMQ: task messages written to disk by the broker before it confirms them
    (`persistent`), or kept in its memory (`transient`: confirmed about twice as fast, but
    lost if the broker restarts before a worker took them; the beat then sends them again
    past SCHEDULER_QUEUED_TIMEOUT_S). Celery's `task_default_delivery_mode`; Redis ignores it."""
    # URLs may hold passwords: kept out of repr(); print them through services.redact().
    result_backend: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RESULT_BACKEND", "SCHEDULER_RESULT_BACKEND"),
        repr=False,
    )
    state_dir: Path = Path(".scheduler")
    """Where the embedded services keep their data and the state file."""

    db_pool_size: int = 5
    db_max_overflow: int = 5

    beat_max_batch: int = 1000
    """Most schedules one tick claims; a bigger backlog is drained tick after tick."""
    beat_default_misfire_grace_s: int = 60
    beat_max_catchup: int = 100
    """Most missed slots one `run_all` schedule replays at once."""
    beat_lookahead_s: float = Field(default=2.0, ge=0.0, le=30.0)
    """How far ahead, at least, the beat writes upcoming runs of `allow` schedules; each is held
    in memory and published at its time, so a busy second costs only the publish. When many
    rows fall due at one instant the beat starts earlier, sized by their number and its
    measured write rate (see `scheduler.core.writeahead`). 0 turns writing ahead off."""
    beat_lookahead_max_s: float = Field(default=60.0, ge=0.0, le=600.0)
    """How far ahead, at most, the beat writes runs (and how far it looks to size the lead)."""
    beat_max_sleep_s: float = 5.0
    """Longest the beat sleeps without looking at the database (a safety net for lost NOTIFYs)."""
    beat_sweep_after_s: float = 5.0
    """Rows left `pending` this long are republished by the outbox sweep."""
    beat_backoff_max_s: float = 30.0
    beat_confirm_timeout_s: float = Field(default=10.0, gt=0.0)
    """Longest wait for RabbitMQ's publisher confirms of one batch; runs not confirmed by then
    stay `pending` for the sweep."""
    queued_timeout_s: float = Field(default=300.0, gt=0.0)
    """A run `queued` this long without a worker claiming it, while its queue holds no other
    messages, is published again with the same task id (a schedule's `options` may set its own
    `queued_timeout_s`)."""
    queued_lost_after_s: float = Field(default=3600.0, gt=0.0)
    """A run still unclaimed this long after it was written (republished meanwhile, its queue
    empty) ends `lost`; `options.queued_lost_after_s` overrides it per schedule."""
    beat_leader_lock: bool = False
    """Optional single-leader mode (RedBeat's Redis lock); off: any number of beats run at once."""
    beat_leader_lock_timeout_s: float = 10.0

    backfill_max: int = Field(default=1000, ge=1)
    """Most slots one backfill may create (`SCHEDULER_BACKFILL_MAX`); a longer range is refused."""

    partition_interval: Literal["auto", "day", "week"] = "auto"
    """Span of one `executions` partition (`SCHEDULER_PARTITION_INTERVAL`); `auto`: daily
    when the observed volume reaches `partition_daily_from_runs_per_day`, else weekly."""
    partition_daily_from_runs_per_day: int = Field(default=100_000, ge=1)
    partition_ahead_days: int = Field(default=7, ge=1, le=366)
    """How far ahead partitions are created (by any beat, and `scheduler partitions maintain`)."""
    partition_maintain_s: float = Field(default=3600.0, gt=0)
    """How often a beat maintains the partitions (create ahead, drop those past retention);
    0 < value; the beat also does it at start."""
    retention_success: str = "14d"
    """How long `success` runs are kept (`SCHEDULER_RETENTION_SUCCESS`: 14d, 36h, or days)."""
    retention_failure: str = "90d"
    """`failed`, `timeout`, `lost`, `revoked` runs (`SCHEDULER_RETENTION_FAILURE`)."""
    retention_skipped: str = "7d"
    """`skipped`, `missed` runs (`SCHEDULER_RETENTION_SKIPPED`)."""

    worker_progress_throttle_s: float = 0.5
    worker_result_summary_max: int = 2000
    worker_lost_margin_s: float = 60.0
    """A run still `running` this long past its hard time limit (or its worker gone) is `lost`."""

    clock_resync_s: float = Field(default=30.0, gt=0.0)
    """How old a worker's reading of the database clock may get before it is read again
    (in the background); the beat reads it with every pass."""

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per line (time, level, logger, message, execution_id, ...)."""

    http_host: str = "127.0.0.1"
    """Interface of the observability port (`0.0.0.0` in a container, for probes)."""
    beat_http_port: int | None = None
    """Serve `/metrics`, `/livez`, `/readyz` from the beat on this port."""
    worker_http_port: int | None = None
    """Serve them from a worker's main process on this port (prefork children added up)."""
    beat_liveness_s: float | None = None
    """`/livez` fails when no beat pass finished this long; default 3 x max(max sleep, back-off cap)."""
    metrics_buckets: list[float] | None = None
    """Histogram buckets in seconds (a JSON list); default 1 ms .. 1 h."""
    metrics_schedule_limit: int = Field(default=1000, ge=0)
    """Most `monitored` schedules given per-schedule series (by name)."""
    metrics_refresh_s: float = Field(default=5.0, gt=0)
    """How often the database-derived series (outbox, monitored schedules) are read again."""

    web_url: str | None = None
    """The dashboard's base URL: alert bodies link to `{web_url}/runs/{execution_id}`."""
    alerts_poll_s: float = Field(default=1.0, gt=0)
    alerts_timeout_s: float = Field(default=5.0, gt=0)
    alerts_retry_max_s: float = Field(default=300.0, gt=0)
    """Cap of the back-off between two attempts of one delivery (it is never given up)."""
    alerts_batch: int = Field(default=50, ge=1)

    web_secret: str | None = Field(default=None, repr=False)
    """Signs the dashboard's session cookie (`SCHEDULER_WEB_SECRET`); unset: a random key
    per process, so sessions end when `scheduler web` restarts."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
