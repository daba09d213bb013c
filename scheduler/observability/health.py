"""The observability HTTP port of a beat, a worker or `scheduler metrics`.

`/metrics` (Prometheus text), `/livez`, `/readyz`, served by a small threaded HTTP server
in a daemon thread of the process's main (never a prefork child): it answers while the
beat's loop is stuck, which is what lets `/livez` say so.

- `/livez`: 200 while the process's loop made progress recently. A beat reports each pass
  (completed or failed: an outage is not a wedge); when none finished within
  `liveness_bound_s` the probe fails with 503. Processes without a loop to watch answer 200.
- `/readyz`: 200 when PostgreSQL and the broker accept a connection now (each checked with
  a short timeout, at most once a second), else 503 naming which one is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from config.settings import Settings, get_settings
from scheduler.observability import metrics
from scheduler.runtime.urls import redact

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0
READY_CACHE_S = 1.0


def liveness_bound_s(settings: Settings) -> float:
    """How long a beat may go without finishing a pass before `/livez` fails: three of its
    longest sleeps (the max sleep, or the back-off cap while retrying), at least 5 s."""
    if settings.beat_liveness_s is not None:
        return settings.beat_liveness_s
    return max(5.0, 3 * max(settings.beat_max_sleep_s, settings.beat_backoff_max_s))


class Heartbeat:
    """The last time the watched loop made progress (monotonic clock)."""

    def __init__(self, bound_s: float | None) -> None:
        self.bound_s = bound_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def age_s(self) -> float:
        return time.monotonic() - self._last

    def alive(self) -> bool:
        return self.bound_s is None or self.age_s() <= self.bound_s


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


class ReadinessCheck:
    """Connects to PostgreSQL and the broker (fresh connections, short timeouts): the
    process's own pool may be fine while the server is gone, or the reverse."""

    def __init__(self, database_url: str, broker_url: str) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self._lock = threading.Lock()
        self._cached: tuple[float, Readiness] | None = None

    def check(self) -> Readiness:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < READY_CACHE_S:
                return self._cached[1]
            checks = {"database": self._database(), "broker": self._broker()}
            result = Readiness(all(v == "ok" for v in checks.values()), checks)
            self._cached = (time.monotonic(), result)
            return result

    def _database(self) -> str:
        import asyncpg

        from scheduler.runtime.dsn import asyncpg_dsn

        async def ping() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(self.database_url), timeout=CHECK_TIMEOUT_S)
            try:
                await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
            finally:
                await conn.close(timeout=CHECK_TIMEOUT_S)

        try:
            asyncio.run(ping())
        except Exception as exc:
            return _reason(exc)
        return "ok"

    def _broker(self) -> str:
        from kombu import Connection  # type: ignore[attr-defined]

        try:
            with Connection(  # type: ignore[no-untyped-call]
                self.broker_url, connect_timeout=CHECK_TIMEOUT_S
            ) as conn:
                conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
        except Exception as exc:
            return _reason(exc)
        return "ok"


def _reason(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}".splitlines()[0])[:200]


class ObservabilityServer:
    """`/metrics`, `/livez`, `/readyz` on one port, in a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        readiness: ReadinessCheck | None,
        heartbeat: Heartbeat | None = None,
        exposition: Callable[[], bytes] = metrics.exposition,
    ) -> None:
        self.readiness = readiness
        self.heartbeat = heartbeat
        self.exposition = exposition
        handler = _handler(self)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scheduler-http", daemon=True
        )

    def start(self) -> ObservabilityServer:
        metrics.enable()
        self._thread.start()
        log.info("serving /metrics, /livez, /readyz on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def livez(self) -> tuple[int, dict[str, Any]]:
        if self.heartbeat is None or self.heartbeat.alive():
            age = None if self.heartbeat is None else round(self.heartbeat.age_s(), 3)
            return 200, {"status": "ok", "last_progress_s": age}
        return 503, {
            "status": "stuck",
            "last_progress_s": round(self.heartbeat.age_s(), 3),
            "bound_s": self.heartbeat.bound_s,
        }

    def readyz(self) -> tuple[int, dict[str, Any]]:
        if self.readiness is None:
            return 200, {"status": "ok"}
        result = self.readiness.check()
        return (200 if result.ready else 503), {
            "status": "ok" if result.ready else "unavailable",
            **result.checks,
        }


def _handler(server: ObservabilityServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    self._send(200, server.exposition(), metrics.CONTENT_TYPE)
                elif path in ("/livez", "/readyz"):
                    code, body = server.livez() if path == "/livez" else server.readyz()
                    self._send(code, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")
            except Exception as exc:
                log.warning("%s failed: %s", path, exc)
                self._send(500, b"error\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler


def serve(
    port: int,
    *,
    heartbeat: Heartbeat | None = None,
    settings: Settings | None = None,
    exposition: Callable[[], bytes] = metrics.exposition,
) -> ObservabilityServer:
    """Start the port with readiness checks on this process's database and broker."""
    from scheduler.runtime.urls import resolve_broker_url, resolve_database_url

    settings = settings or get_settings()
    readiness = ReadinessCheck(resolve_database_url(settings), resolve_broker_url(settings))
    return ObservabilityServer(
        settings.http_host, port, readiness=readiness, heartbeat=heartbeat, exposition=exposition
    ).start()


_worker_server: ObservabilityServer | None = None


def _start_worker_port(**_: Any) -> None:
    """`worker_init`, in the worker's main process before the pool forks: multiprocess
    metrics in a directory of this worker's own, and the port."""
    global _worker_server
    settings = get_settings()
    if settings.worker_http_port is None or _worker_server is not None:
        return
    path = metrics.use_multiprocess_dir()
    log.info("worker metrics of every pool process gathered under %s", path)
    _worker_server = serve(settings.worker_http_port, settings=settings)


def _child_exit(pid: int | None = None, **_: Any) -> None:
    import os

    metrics.forget_process(pid or os.getpid())


def _stop_worker_port(**_: Any) -> None:
    global _worker_server
    if _worker_server is not None:
        _worker_server.stop()
        _worker_server = None
        metrics.remove_multiprocess_dir()


def install_worker_hooks() -> None:
    """Connect the worker's port to Celery's signals (idempotent; does nothing else)."""
    from celery import signals

    signals.worker_init.connect(_start_worker_port, weak=False, dispatch_uid="scheduler-http")
    signals.worker_process_shutdown.connect(
        _child_exit, weak=False, dispatch_uid="scheduler-http-child"
    )
    signals.worker_shutdown.connect(
        _stop_worker_port, weak=False, dispatch_uid="scheduler-http-stop"
    )
