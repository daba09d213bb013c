"""Prometheus metrics under their public names (the table in docs/OBSERVABILITY.md).

Nothing here starts a server or touches the database at import: the metric objects are made
on first use, so a process may switch prometheus-client to multiprocess mode first (the
worker does, before its pool forks). The hooks called from the beat and the worker are one
cheap call each; when no process asked for metrics (`enabled()` is false) they return at
once.

`exposition()` returns the text of the current process's metrics (with a worker's prefork
children aggregated): a web app serves it as it is, with `CONTENT_TYPE`. The per-schedule
series and the outbox gauge come from the database (`scheduler.observability.database_series`):
a refresh reads them and the next exposition shows them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import Settings, get_settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""1 ms .. 1 h: a publish takes milliseconds, a nightly job an hour (SCHEDULER_METRICS_BUCKETS)."""


@dataclass(frozen=True)
class _BeatMetrics:
    beat_pass: Histogram
    beat_last_pass: Gauge
    dispatch_delay: Histogram
    dispatched: Counter
    missed: Counter
    skipped: Counter
    withdrawn: Counter
    held: Gauge


@dataclass(frozen=True)
class _WorkerMetrics:
    executions: Counter
    duration: Histogram
    queue: Histogram
    running: Gauge


_lock = threading.Lock()
_beat: _BeatMetrics | None = None
_worker: _WorkerMetrics | None = None
_enabled = False


def enabled() -> bool:
    """True once this process serves metrics (or a worker's parent does)."""
    return _enabled or bool(os.environ.get(MULTIPROC_ENV))


def enable() -> None:
    global _enabled
    _enabled = True


def use_multiprocess_dir(path: Path | None = None) -> Path:
    """Multiprocess mode for a worker and its prefork children: every process writes its
    samples under `path` (a fresh temporary directory by default), the main process adds
    them up. Must be called before the first metric is made in this process."""
    if path is None:
        existing = os.environ.get(MULTIPROC_ENV)
        path = Path(existing) if existing else Path(tempfile.mkdtemp(prefix="scheduler-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # a previous worker's files would be added in
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    enable()
    return path


def forget_process(pid: int) -> None:
    """A prefork child exited: its live gauges go (its counters stay in the totals)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _forget_dead(path: Path) -> None:
    """Live gauges of children killed without a goodbye (SIGKILL, OOM) are dropped."""
    pids: set[int] = set()
    for file in path.glob("gauge_live*_*.db"):
        tail = file.stem.rpartition("_")[2]
        if tail.isdigit():
            pids.add(int(tail))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            forget_process(pid)
        except PermissionError:
            pass


def remove_multiprocess_dir() -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path and Path(path).name.startswith("scheduler-metrics-"):
        shutil.rmtree(path, ignore_errors=True)


def buckets(settings: Settings | None = None) -> tuple[float, ...]:
    configured = (settings or get_settings()).metrics_buckets
    return tuple(sorted(configured)) if configured else DEFAULT_BUCKETS_S


def _beat_metrics() -> _BeatMetrics:
    """The beat's series: made by the first beat hook, so a worker does not show them."""
    global _beat
    current = _beat
    if current is not None:
        return current
    with _lock:
        if _beat is None:
            from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

            disable_created_metrics()  # type: ignore[no-untyped-call]
            b = buckets()
            _beat = _BeatMetrics(
                beat_pass=Histogram(
                    "scheduler_beat_pass_seconds", "Duration of one beat pass.", buckets=b
                ),
                beat_last_pass=Gauge(
                    "scheduler_beat_last_pass_timestamp_seconds",
                    "When the beat last completed a pass (Unix time).",
                    multiprocess_mode="max",
                ),
                dispatch_delay=Histogram(
                    "scheduler_dispatch_delay_seconds",
                    "Published on the broker minus the slot's time.",
                    ["trigger"],
                    buckets=b,
                ),
                dispatched=Counter(
                    "scheduler_runs_dispatched", "Runs published to the broker.", ["trigger"]
                ),
                missed=Counter("scheduler_runs_missed", "Slots recorded missed (misfire policy)."),
                skipped=Counter(
                    "scheduler_runs_skipped", "Runs recorded skipped (overlap policy)."
                ),
                withdrawn=Counter(
                    "scheduler_runs_withdrawn", "Runs written ahead and withdrawn unpublished."
                ),
                held=Gauge(
                    "scheduler_runs_held",
                    "Runs written ahead and held in this beat until their time.",
                    multiprocess_mode="livesum",
                ),
            )
        return _beat


def _worker_metrics() -> _WorkerMetrics:
    global _worker
    current = _worker
    if current is not None:
        return current
    with _lock:
        if _worker is None:
            from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

            disable_created_metrics()  # type: ignore[no-untyped-call]
            b = buckets()
            _worker = _WorkerMetrics(
                executions=Counter(
                    "scheduler_executions", "Finished attempts by outcome.", ["task", "status"]
                ),
                duration=Histogram(
                    "scheduler_execution_duration_seconds",
                    "Run time of one attempt.",
                    ["task"],
                    buckets=b,
                ),
                queue=Histogram(
                    "scheduler_execution_queue_seconds",
                    "Started minus queued.",
                    ["task"],
                    buckets=b,
                ),
                running=Gauge(
                    "scheduler_executions_running",
                    "Attempts running now.",
                    ["task"],
                    multiprocess_mode="livesum",
                ),
            )
        return _worker


# --- hooks (one call each from the beat and the worker) -----------------------------------


def beat_pass(duration_s: float, finished_at: float) -> None:
    if enabled():
        m = _beat_metrics()
        m.beat_pass.observe(duration_s)
        m.beat_last_pass.set(finished_at)


def runs_published(runs: Sequence[Any], now: datetime) -> None:
    """Runs (with `trigger` and `scheduled_for`) just published to the broker."""
    if not enabled() or not runs:
        return
    m = _beat_metrics()
    by_trigger: dict[str, list[Any]] = {}
    for run in runs:
        by_trigger.setdefault(str(getattr(run.trigger, "value", run.trigger)), []).append(run)
    for trigger, group in by_trigger.items():  # one label lookup per trigger, not per run
        m.dispatched.labels(trigger).inc(len(group))
        observe = m.dispatch_delay.labels(trigger).observe
        for run in group:
            if run.scheduled_for is not None:
                observe(max(0.0, (now - run.scheduled_for).total_seconds()))


def runs_planned(runs: Sequence[Any], inserted: Iterable[Any]) -> None:
    """Runs a tick wrote: count the `missed` and `skipped` ones actually inserted."""
    if not enabled() or not runs:
        return
    written = set(inserted)
    missed = skipped = 0
    for run in runs:
        if run.id in written:
            code = str(getattr(run.status, "value", run.status))
            missed += code == "missed"
            skipped += code == "skipped"
    m = _beat_metrics()
    if missed:
        m.missed.inc(missed)
    if skipped:
        m.skipped.inc(skipped)


def runs_withdrawn(count: int) -> None:
    if enabled() and count:
        _beat_metrics().withdrawn.inc(count)


def runs_held(count: int) -> None:
    if enabled():
        _beat_metrics().held.set(count)


def run_started(task: str, attempt: Any) -> None:
    """A worker claimed a run; `attempt` may carry `queue_s` (started minus queued)."""
    if not enabled():
        return
    m = _worker_metrics()
    m.running.labels(task).inc()
    queue_s = getattr(attempt, "queue_s", None)
    if queue_s is not None:
        m.queue.labels(task).observe(max(0.0, queue_s))


def run_finished(task: str, status: str, duration_s: float) -> None:
    if not enabled():
        return
    m = _worker_metrics()
    m.running.labels(task).dec()
    m.executions.labels(task, status).inc()
    m.duration.labels(task).observe(duration_s)


def run_ended_outside(task: str, exception: BaseException | None) -> None:
    """An outcome learnt in the worker's main process: a hard time limit or a child that
    died (the run's own process never counted it)."""
    name = type(exception).__name__
    status = {"TimeLimitExceeded": "timeout", "WorkerLostError": "lost"}.get(name)
    if status is not None and enabled():
        _worker_metrics().executions.labels(task, status).inc()


def _registry() -> CollectorRegistry:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client import multiprocess as mp

    path = os.environ.get(MULTIPROC_ENV)
    if path:
        _forget_dead(Path(path))
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(*, with_database: bool | None = None) -> bytes:
    """The Prometheus text of this process: its own metrics (a worker's children included)
    and, when `with_database` (default: once `refresh` ran here), the database series."""
    from prometheus_client import generate_latest

    from scheduler.observability import database_series

    enable()
    text = generate_latest(_registry())
    source = database_series.current()
    if with_database is None:
        with_database = source is not None
    if with_database and source is not None:
        text += source.text
    return text
