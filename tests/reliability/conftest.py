"""Reliability runs own their PostgreSQL and Redis so they can stop and start them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.settings import get_settings
from scheduler.runtime import migrate
from scheduler.runtime.db import close_runtime
from scheduler.runtime.embedded import EmbeddedServices
from tests.conftest import run_sync

LONG = os.environ.get("RELIABILITY_LONG") == "1"


@dataclass
class OwnServices:
    services: EmbeddedServices
    database_url: str
    broker_url: str
    log_dir: Path


@pytest.fixture
def own_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnServices]:
    tmp_path.chmod(0o755)
    services = EmbeddedServices(tmp_path / "state", durable=True)
    urls = services.up()
    run_sync(migrate.upgrade(urls.database_url))
    monkeypatch.setenv("DATABASE_URL", urls.database_url)
    monkeypatch.setenv("BROKER_URL", urls.broker_url)
    monkeypatch.setenv("SCHEDULER_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    try:
        yield OwnServices(services, urls.database_url, urls.broker_url, log_dir)
    finally:
        close_runtime()
        services.down()
        get_settings.cache_clear()
