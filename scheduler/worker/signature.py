"""The function Celery registers as a tracked task's `run`, adapted from the one written.

Celery checks call arguments against `run`'s signature and binds `self` for `bind=True`
tasks; the adapted `run` always accepts `execution_id`, runs `async def` bodies on the
process's event loop and hands them a `session` when they ask for one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from scheduler.runtime.db import get_runtime

_accepts_cache: dict[Any, bool] = {}


def accepts_execution_id(fn: Callable[..., Any]) -> bool:
    """True when `fn` takes `execution_id` (by name, or through **kwargs)."""
    key = getattr(fn, "__func__", fn)
    cached = _accepts_cache.get(key)
    if cached is None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        cached = "execution_id" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        _accepts_cache[key] = cached
    return cached


def adapt_task_class(cls: Any) -> None:
    """Adapt the `run` of a task class built on the tracked base, whether through
    `tracked_task` or `@app.task(base=TrackedTask)` (see `adapt`)."""
    run = cls.__dict__.get("run")
    if run is None:
        return
    unbound = isinstance(run, staticmethod)
    fn = run.__func__ if unbound else run
    if not callable(fn):
        return
    if not cls.__dict__.get("_decorated") and not inspect.iscoroutinefunction(fn):
        return  # a class-based task with a plain `run`: nothing to adapt
    adapted = adapt(fn)
    if adapted is fn:
        return
    cls.run = staticmethod(adapted) if unbound else adapted
    app = cls.__dict__.get("app")
    if cls.__dict__.get("_decorated") and app is not None:
        # Celery built `__header__` (the argument check of apply_async) from the
        # original function: rebuild it so `execution_id` is accepted and `session`
        # is not required from callers.
        cls.__header__ = app.type_checker(adapted, bound=not unbound)


def adapt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function Celery registers as `run`.

    - It always accepts `execution_id` (Celery checks call arguments against the signature)
      and passes it on only when `fn` declares it (or takes **kwargs).
    - An `async def` body becomes a synchronous function that runs the coroutine on the
      process's event loop, so exceptions surface inside `run`: Celery's `autoretry_for`
      wrapper (which wraps `run`) then retries async bodies exactly like plain ones.
    - An async body declaring `session` gets an `AsyncSession` of the process's engine.
    """
    if getattr(fn, "__tracked_adapted__", False):
        return fn
    is_async = inspect.iscoroutinefunction(fn)
    sig = inspect.signature(fn)
    wants_session = is_async and "session" in sig.parameters
    wants_id = accepts_execution_id(fn)
    if wants_id and not is_async:
        return fn
    params = [p for p in sig.parameters.values() if p.name != "session"]
    if not wants_id:
        extra = inspect.Parameter("execution_id", inspect.Parameter.KEYWORD_ONLY, default=None)
        var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
        params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = [*params, extra, *var_kw]
    target: Callable[..., Any]
    if is_async:

        async def body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if wants_session:
                async with get_runtime().session() as session:
                    return await fn(*args, session=session, **kwargs)
            return await fn(*args, **kwargs)

        def run_async_body(*args: Any, **kwargs: Any) -> Any:
            if not wants_id:
                kwargs.pop("execution_id", None)
            return get_runtime().run(body(args, kwargs))

        target = run_async_body
    else:

        def run_sync(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("execution_id", None)
            return fn(*args, **kwargs)

        target = run_sync
    functools.update_wrapper(target, fn)
    setattr(target, "__signature__", sig.replace(parameters=params))  # noqa: B010
    setattr(target, "__tracked_adapted__", True)  # noqa: B010
    return target
