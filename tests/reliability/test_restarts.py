"""Beat and worker survive PostgreSQL and Redis restarts; nothing is duplicated or stuck."""

from __future__ import annotations

import time

from tests.reliability.conftest import OwnServices
from tests.reliability.restarts import restart_mid_run


def test_postgres_restart_mid_run(own_services: OwnServices) -> None:
    postgres = own_services.services.postgres

    def outage() -> None:
        postgres.stop(mode="immediate")
        time.sleep(3)
        postgres.start()

    restart_mid_run(own_services, outage)


def test_redis_restart_mid_run(own_services: OwnServices) -> None:
    redis = own_services.services.redis
    port = int(own_services.broker_url.rsplit(":", 1)[1].split("/")[0])

    def outage() -> None:
        redis.stop()
        time.sleep(4)
        redis.start(port)

    figures = restart_mid_run(own_services, outage)
    assert figures["active"] == 0
