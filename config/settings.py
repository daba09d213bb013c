"""Process settings, read from the environment (and a `.env` file when present).

Standard names stay standard (`DATABASE_URL`, `BROKER_URL`, `RESULT_BACKEND`); every
other option takes the `SCHEDULER_` prefix, e.g. `SCHEDULER_BEAT_MAX_BATCH=500`.
When `DATABASE_URL` / `BROKER_URL` are unset the embedded services are used.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    """How far ahead the beat writes upcoming runs of `allow` schedules; each is held in memory
    and published at its time, so a busy second costs only the publish. 0 turns it off."""
    beat_max_sleep_s: float = 5.0
    """Longest the beat sleeps without looking at the database (a safety net for lost NOTIFYs)."""
    beat_sweep_after_s: float = 5.0
    """Rows left `pending` this long are republished by the outbox sweep."""
    beat_backoff_max_s: float = 30.0
    beat_leader_lock: bool = False
    """Optional single-leader mode (RedBeat's Redis lock); off: any number of beats run at once."""
    beat_leader_lock_timeout_s: float = 10.0

    worker_progress_throttle_s: float = 0.5
    worker_result_summary_max: int = 2000
    worker_lost_margin_s: float = 60.0
    """A run still `running` this long past its hard time limit (or its worker gone) is `lost`."""

    clock_resync_s: float = Field(default=30.0, gt=0.0)
    """How old a worker's reading of the database clock may get before it is read again
    (in the background); the beat reads it with every pass."""

    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
