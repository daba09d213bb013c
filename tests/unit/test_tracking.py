"""Tracked tasks without I/O: registration, signatures, options, result summaries."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from scheduler.worker.outcome import summarize
from scheduler.worker.signature import accepts_execution_id
from scheduler.worker.tracked import TrackedTask, tracked_task

SEED_OPTIONS: dict[str, Any] = {
    "bind": True,
    "queue": "email",
    "rate_limit": "10/m",
    "max_retries": 3,
    "default_retry_delay": 60,
    "autoretry_for": (ConnectionError,),
    "dont_autoretry_for": (ValueError,),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "soft_time_limit": 120,
    "time_limit": 180,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "track_started": True,
    "expires": 3600,
    "compression": "gzip",
    "serializer": "json",
}


@pytest.fixture
def app() -> Iterator[Celery]:
    """A private app; tasks are registered with shared=False so none leaks into other apps."""
    private = Celery("unit-tracking", set_as_current=False)
    yield private
    private.close()


def test_summarize_bounds_and_serialises_results() -> None:
    assert summarize(None, 10) is None
    assert summarize("ok", 10) == "ok"
    assert summarize({"a": 1}, 100) == '{"a": 1}'
    long = summarize("x" * 50, 10)
    assert long is not None
    assert len(long) == 10
    assert long.endswith("…")
    assert summarize(object(), 200) is not None  # anything repr-able is summarised


def test_accepts_execution_id() -> None:
    def declares(execution_id: str | None = None) -> None: ...

    def var_kw(**kwargs: Any) -> None: ...

    def without(x: int) -> None: ...

    assert accepts_execution_id(declares)
    assert accepts_execution_id(var_kw)
    assert not accepts_execution_id(without)


# Celery itself deprecates `queue` as a task attribute (use task_routes or the schedule's
# queue); the option is still honoured by apply_async and passed through unchanged.
@pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")
def test_every_seed_option_is_accepted_and_applied(app: Celery) -> None:
    @tracked_task(name="unit.seed_options", app=app, shared=False, **SEED_OPTIONS)
    def send_notification(self: TrackedTask, data: str, execution_id: str | None = None) -> str:
        return data

    task = app.tasks["unit.seed_options"]
    assert isinstance(task, TrackedTask)
    for option, value in SEED_OPTIONS.items():
        if option != "bind":
            assert getattr(task, option) == value, option
    # autoretry_for wraps `run`; the original body is kept underneath
    assert hasattr(task, "_orig_run")


def test_function_without_execution_id_gets_it_stripped(app: Celery) -> None:
    calls: list[tuple[int, int]] = []

    @tracked_task(name="unit.plain", app=app, shared=False)
    def add(x: int, y: int = 1) -> int:
        calls.append((x, y))
        return x + y

    task = app.tasks["unit.plain"]
    params = inspect.signature(task.run).parameters
    assert params["execution_id"].kind is inspect.Parameter.KEYWORD_ONLY
    # apply_async's argument check accepts the beat's execution_id kwarg
    task.__header__(2, y=3, execution_id="abc")
    assert task.run(2, y=3, execution_id="abc") == 5
    assert calls == [(2, 3)]


def test_function_declaring_execution_id_receives_it(app: Celery) -> None:
    @tracked_task(name="unit.declares", app=app, shared=False)
    def echo(execution_id: str | None = None) -> str | None:
        return execution_id

    assert app.tasks["unit.declares"].run(execution_id="e-1") == "e-1"


def test_async_body_runs_as_a_synchronous_run(app: Celery) -> None:
    """Celery's autoretry wrapper sees an async body's exceptions only if `run` awaits it."""

    @tracked_task(name="unit.async", app=app, shared=False, bind=True)
    async def fetch(self: TrackedTask, url: str, session: Any) -> str:
        return url

    task = app.tasks["unit.async"]
    assert not inspect.iscoroutinefunction(task.run)
    params = inspect.signature(task.run).parameters
    assert "session" not in params
    assert "execution_id" in params
    task.__header__("https://example.org", execution_id="e")  # `session` not required


def test_base_class_form_is_adapted_like_the_decorator(app: Celery) -> None:
    @app.task(base=TrackedTask, name="unit.base_async", bind=True, max_retries=2, shared=False)
    async def report(self: TrackedTask, day: str, session: Any) -> str:
        return day

    @app.task(base=TrackedTask, name="unit.base_sync", shared=False)
    def plain(day: str) -> str:
        return day

    async_task = app.tasks["unit.base_async"]
    sync_task = app.tasks["unit.base_sync"]
    assert isinstance(async_task, TrackedTask)
    assert not inspect.iscoroutinefunction(async_task.run)
    async_task.__header__("2026-01-01", execution_id="e")
    assert sync_task.run("2026-01-01", execution_id="e") == "2026-01-01"
    assert async_task.max_retries == 2


def test_class_based_task_with_plain_run_is_left_alone(app: Celery) -> None:
    class Nightly(TrackedTask):
        name = "unit.class_based"

        def run(self, day: str) -> str:
            return day

    assert Nightly.__dict__["run"].__name__ == "run"
    assert "execution_id" not in inspect.signature(Nightly.run).parameters


def test_unreachable_sees_through_sqlalchemys_wrapping() -> None:
    import asyncpg
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    from scheduler.runtime.retry import unreachable

    def wrapped(cause: BaseException) -> sa_exc.DBAPIError:
        """What SQLAlchemy raises: DBAPIError(orig=adapter error caused by asyncpg's)."""
        try:
            try:
                raise AsyncAdapt_asyncpg_dbapi.Error(str(cause)) from cause  # type: ignore[no-untyped-call]
            except AsyncAdapt_asyncpg_dbapi.Error as adapted:
                raise sa_exc.DBAPIError("SELECT 1", None, adapted) from adapted
        except sa_exc.DBAPIError as error:
            return error

    starting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    assert unreachable(wrapped(starting))
    assert unreachable(ConnectionResetError(104, "reset"))
    syntax = asyncpg.exceptions.PostgresSyntaxError("syntax error")
    assert not unreachable(wrapped(syntax))
    assert not unreachable(ValueError("bad value"))
