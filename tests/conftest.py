"""Test services and isolation.

PostgreSQL and Redis come from `TEST_DATABASE_URL` / `TEST_BROKER_URL` when set, else from
embedded servers started once per session in a temporary directory. Each test that asks for
`database_url` gets its own database cloned from a migrated template, and each test that
asks for `broker_url` gets an emptied Redis database.

A test that asks for `broker` runs once per broker: on Redis, and on RabbitMQ from
`TEST_AMQP_URL` (skipped with the reason shown when it is unset or unreachable; failed
instead under CI=true). A RabbitMQ may be shared, so each test gets queue names of its own
(`broker.queue`) and its queues are deleted afterwards.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from click.testing import Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from config.settings import get_settings
from scheduler.beat.dispatcher import Dispatcher
from scheduler.runtime import db as scheduler_db
from tests.support import services as services_support
from tests.support.beat import build_dispatcher
from tests.support.brokers import BrokerUnderTest as BrokerUnderTest
from tests.support.brokers import Connection as Connection
from tests.support.brokers import app_on_broker
from tests.support.cli import invoke
from tests.support.services import SessionServices as SessionServices
from tests.support.services import run_sync as run_sync
from tests.support.web import PASSWORD, Web

TIERS = ("unit", "integration", "acceptance", "migrations", "reliability", "browser")


_services: SessionServices | None = None


def session_services() -> SessionServices:
    return services_support.current_services()


def pytest_configure(config: pytest.Config) -> None:
    global _services
    if hasattr(config, "workerinput") or _services is not None:
        return
    _services = SessionServices()
    services_support.set_current_services(_services)
    # Anything that resolves URLs on its own (config.celery at import, the CLI) uses the
    # test servers, never the developer's `.scheduler/`.
    os.environ["BROKER_URL"] = _services.broker_url
    os.environ["SCHEDULER_STATE_DIR"] = str(_services.tmp / "state")
    os.environ.setdefault("DATABASE_URL", _services.url_for("postgres"))
    get_settings.cache_clear()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _services
    scheduler_db.close_runtime()
    if _services is not None:
        _services.close()
        _services = None
        services_support.set_current_services(None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        try:
            tier = Path(item.path).relative_to(root).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def services() -> SessionServices:
    return session_services()


def _database(
    services: SessionServices, monkeypatch: pytest.MonkeyPatch, *, migrated: bool
) -> Iterator[str]:
    """A database of its own for one test, exported as DATABASE_URL, dropped afterwards."""
    name = services.create_database(from_template=migrated)
    url = services.url_for(name)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        scheduler_db.close_runtime()
        get_settings.cache_clear()
        services.drop_database(name)


@pytest.fixture
def database_url(services: SessionServices, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated database for this test; also exported as DATABASE_URL."""
    yield from _database(services, monkeypatch, migrated=True)


@pytest.fixture
def empty_database_url(services: SessionServices, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    yield from _database(services, monkeypatch, migrated=False)


@pytest.fixture
def broker_url(services: SessionServices) -> str:
    """The test Redis database, emptied for this test."""
    client = redis.Redis.from_url(services.broker_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return services.broker_url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = scheduler_db.create_engine(database_url, pool_size=2, max_overflow=2)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def dispatcher(engine: AsyncEngine, broker_url: str) -> AsyncIterator[Dispatcher]:
    """The beat's engine on this test's database and Redis (batch of 50, tasks `REGISTERED`)."""
    from config.celery import app
    from scheduler.broker.publisher import Publisher

    publisher = Publisher(app)
    yield build_dispatcher(engine, publisher, beat_max_batch=50)
    publisher.close()


@pytest.fixture
def cli(database_url: str, broker_url: str) -> Callable[..., Result]:
    """`scheduler *args` in-process on this test's database and broker."""
    return invoke


@pytest.fixture
async def web(database_url: str, broker_url: str) -> AsyncIterator[Web]:
    """The dashboard in-process on this test's database: a token per role (viewer, operator,
    admin; each also a user with password `PASSWORD`) and a schedule `nightly`."""
    import httpx

    from scheduler import api
    from scheduler.web import create_app
    from scheduler.web.bridge import call

    tokens = {}
    for role in ("viewer", "operator", "admin"):
        await call(api.aadd_user(role, role, PASSWORD, actor="test"))
        tokens[role] = await call(api.acreate_token(f"{role}-token", role, actor="test"))
    await call(
        api.aupsert_schedule(
            api.ScheduleDefinition(name="nightly", task="demo.noop", cron="0 3 * * *"), actor="test"
        )
    )
    app = create_app(secret_key="test-secret")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield Web(app, client, tokens)


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with scheduler_db.session_factory(engine)() as s:
        yield s


def skip_or_fail(reason: str) -> None:
    """A missing service or binary skips the test with `reason`, but fails it under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def amqp_url_or_skip() -> str:
    url = os.environ.get("TEST_AMQP_URL")
    if not url:
        skip_or_fail("RabbitMQ tests need TEST_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672//)")
    assert url is not None
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        skip_or_fail(f"RabbitMQ at TEST_AMQP_URL is unreachable: {exc}")
    return url


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, services: SessionServices) -> Iterator[BrokerUnderTest]:
    """Each broker in turn, exported as BROKER_URL and set on `config.celery:app`."""
    with broker_in_use(request.param, services) as under_test:
        yield under_test


@contextmanager
def broker_in_use(kind: str, services: SessionServices) -> Iterator[BrokerUnderTest]:
    """RabbitMQ from TEST_AMQP_URL (or the skip), or the session's Redis emptied; the app and
    the processes started meanwhile on it; its queues deleted afterwards."""
    if kind == "rabbitmq":
        url = amqp_url_or_skip()
    else:
        url = services.broker_url
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
    under_test = BrokerUnderTest(kind, url, queue="")
    under_test.queue = under_test.new_queue()
    try:
        with app_on_broker(url):
            yield under_test
    finally:
        under_test.cleanup()
