"""Beat and worker on RabbitMQ survive a broker restart mid-run: nothing lost, nothing twice,
nothing stuck (the same assertions as the Redis restart)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import get_settings
from tests.conftest import skip_or_fail
from tests.reliability.conftest import OwnServices
from tests.reliability.rabbitmq import PrivateRabbitMQ, rabbitmq_server
from tests.reliability.restarts import restart_mid_run


@pytest.fixture
def rabbitmq(
    own_services: OwnServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrivateRabbitMQ]:
    if rabbitmq_server() is None:
        skip_or_fail("the RabbitMQ restart test needs rabbitmq-server on PATH")
    node = PrivateRabbitMQ(tmp_path / "rabbitmq")
    node.start()
    monkeypatch.setenv("BROKER_URL", node.url)
    get_settings.cache_clear()
    try:
        yield node
    finally:
        node.stop()
        get_settings.cache_clear()


def test_rabbitmq_restart_mid_run(own_services: OwnServices, rabbitmq: PrivateRabbitMQ) -> None:
    def outage() -> None:
        rabbitmq.stop()
        time.sleep(2)
        rabbitmq.start()

    figures = restart_mid_run(own_services, outage)
    assert figures["active"] == 0
