"""Metrics scraped by a real Prometheus from a beat, a prefork worker and `scheduler metrics`;
`/livez` while a pass is wedged, `/readyz` while PostgreSQL is unreachable; JSON logs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from tests.support.observe import Relay, free_port, get, prometheus
from tests.support.procs import Procs, processes, query, wait_for
from tests.support.status import SUCCESS, UNFINISHED

FAST = {
    "SCHEDULER_BEAT_MAX_SLEEP_S": "1",
    "SCHEDULER_BEAT_BACKOFF_MAX_S": "1",
    "SCHEDULER_METRICS_REFRESH_S": "1",
    "SCHEDULER_ALERTS_POLL_S": "0.5",
}


def _families(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    code, body = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, code
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(body.decode())
    }


def _sample(port: int, family: str, sample: str, **labels: str) -> float | None:
    code, body = get(f"http://127.0.0.1:{port}/metrics")
    if code != 200:
        return None
    for fam in text_string_to_metric_families(body.decode()):
        if fam.name != family:
            continue
        for s in fam.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def _beat(procs: Procs, port: int, extra: dict[str, str] | None = None) -> None:
    procs.start(
        "beat",
        "-m",
        "scheduler.cli",
        "beat",
        "--http-port",
        str(port),
        env={**FAST, **(extra or {})},
    )


def _worker(procs: Procs, port: int) -> None:
    procs.start(
        "worker",
        "-m",
        "scheduler.cli",
        "worker",
        "--http-port",
        str(port),
        "-c",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )


def test_prometheus_scrapes_beat_prefork_worker_and_metrics_process(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds, monitored)"
        " VALUES ('obs-noop', 'demo.noop', 1, true), ('obs-hidden', 'demo.noop', 1, false)",
    )
    beat_port, worker_port, metrics_port = free_port(), free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    with processes(logs) as procs:
        _beat(procs, beat_port)
        _worker(procs, worker_port)
        procs.start(
            "metrics", "-m", "scheduler.cli", "metrics", "--port", str(metrics_port), env=FAST
        )
        targets = {"beat": beat_port, "worker": worker_port, "metrics": metrics_port}
        with prometheus(targets, tmp_path) as prom:
            dispatched = 'scheduler_runs_dispatched_total{job="beat",trigger="schedule"}'
            succeeded = (
                'sum(scheduler_executions_total{job="worker",task="demo.noop",status="success"})'
            )
            last_ok = 'scheduler_schedule_last_success_timestamp_seconds{job="metrics",schedule="obs-noop"}'
            first = {
                expr: wait_for(lambda e=expr: prom.value(e), timeout_s=40)  # type: ignore[misc]
                for expr in (dispatched, succeeded, last_ok)
            }
            for expr, value in first.items():
                wait_for(
                    lambda e=expr, v=value: (prom.value(e) or 0) > v,  # type: ignore[misc]
                    timeout_s=20,
                )
            for expr in (
                'scheduler_beat_pass_seconds_count{job="beat"}',
                'scheduler_beat_last_pass_timestamp_seconds{job="beat"}',
                'scheduler_dispatch_delay_seconds_count{job="beat",trigger="schedule"}',
                'scheduler_execution_duration_seconds_count{job="worker",task="demo.noop"}',
                'scheduler_execution_queue_seconds_count{job="worker",task="demo.noop"}',
                'scheduler_executions_running{job="worker",task="demo.noop"}',
                'scheduler_outbox_pending{job="metrics"}',
                'scheduler_schedule_next_run_timestamp_seconds{job="metrics",schedule="obs-noop"}',
                'scheduler_schedule_last_status{job="metrics",schedule="obs-noop",status="success"}',
                'up{job="worker"} == 1',
            ):
                assert prom.query(expr), (expr, procs.logs())
            # cardinality: an unmonitored schedule has no series of its own
            assert not prom.query(
                'scheduler_schedule_next_run_timestamp_seconds{schedule="obs-hidden"}'
            )

        beat = _families(beat_port)
        assert {
            "scheduler_beat_pass_seconds",
            "scheduler_runs_dispatched",
            "scheduler_runs_held",
        } <= set(beat)
        assert "scheduler_executions" not in beat  # a beat runs no task
        worker = _families(worker_port)
        assert "scheduler_beat_pass_seconds" not in worker
        # the prefork children are added up: once quiet, the worker's count is the table's
        query(database_url, "UPDATE schedules SET enabled = false")

        def settled() -> bool:
            rows = query(
                database_url,
                f"SELECT count(*) AS n FROM executions WHERE task = 'demo.noop' AND status_id = {SUCCESS}",
            )
            active = query(
                database_url,
                f"SELECT count(*) AS n FROM executions WHERE status_id IN ({UNFINISHED})",
            )
            counted = _sample(
                worker_port,
                "scheduler_executions",
                "scheduler_executions_total",
                task="demo.noop",
                status="success",
            )
            return bool(active[0]["n"] == 0 and counted == rows[0]["n"])

        wait_for(settled, timeout_s=20, interval_s=0.3)
        for port in (beat_port, worker_port, metrics_port):
            assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
            assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200


def test_livez_fails_while_a_pass_is_wedged_on_a_lock_and_recovers(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    query(
        database_url,
        "INSERT INTO schedules (name, task, interval_seconds) VALUES ('w', 'demo.noop', 1)",
    )
    port = free_port()
    with processes(tmp_path) as procs:
        _beat(procs, port, {"SCHEDULER_BEAT_LIVENESS_S": "3"})
        livez = f"http://127.0.0.1:{port}/livez"
        wait_for(lambda: get(livez)[0] == 200, timeout_s=30, interval_s=0.2)

        async def hold_lock() -> None:
            conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
            try:
                tx = conn.transaction()
                await tx.start()
                await conn.execute("LOCK TABLE schedules IN ACCESS EXCLUSIVE MODE")
                deadline = time.monotonic() + 20
                while get(livez, timeout_s=2)[0] != 503:
                    assert time.monotonic() < deadline, procs.logs()
                    await asyncio.sleep(0.2)
                # wedged, yet the process answers
                assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
                _status, body = get(livez)
                assert json.loads(body)["status"] == "stuck"
                await tx.rollback()
            finally:
                await conn.close()

        asyncio.run(hold_lock())
        wait_for(lambda: get(livez)[0] == 200, timeout_s=15, interval_s=0.2)


def _via(url: str, port: int) -> str:
    """`url` through 127.0.0.1:`port` (TCP), whether it named a TCP server or a socket."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def test_readyz_fails_while_postgres_is_unreachable_and_recovers(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    relay = Relay(
        parts.hostname or "127.0.0.1",
        parts.port or 5432,
        unix_path=f"{socket_dir}/.s.PGSQL.{parts.port or 5432}" if socket_dir else None,
    )
    relay.restore()
    port = free_port()
    try:
        with processes(tmp_path) as procs:
            _beat(procs, port, {"DATABASE_URL": _via(database_url, relay.port)})
            readyz = f"http://127.0.0.1:{port}/readyz"
            wait_for(lambda: get(readyz)[0] == 200, timeout_s=30, interval_s=0.2)
            relay.cut()
            wait_for(lambda: get(readyz)[0] == 503, timeout_s=10, interval_s=0.2)
            _status, body = get(readyz)
            report = json.loads(body)
            assert report["broker"] == "ok", report
            assert report["database"] != "ok", report
            time.sleep(2)
            assert get(f"http://127.0.0.1:{port}/livez")[0] == 200  # down is not wedged
            relay.restore()
            wait_for(lambda: get(readyz)[0] == 200, timeout_s=15, interval_s=0.2)
    finally:
        relay.cut()


def test_json_logs_one_object_per_line_and_no_password(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    secret = "pw-never-logged-7731"
    parts = urlsplit(database_url)
    server = f"{parts.hostname}:{parts.port or 5432}" if parts.hostname else ""  # or a socket
    with_password = urlunsplit(
        parts._replace(netloc=f"{parts.username or 'postgres'}:{secret}@{server}")
    )
    unreachable = urlunsplit(
        parts._replace(netloc=f"postgres:{secret}@127.0.0.1:{free_port()}", query="")
    )
    env = {"SCHEDULER_LOG_FORMAT": "json", "DATABASE_URL": with_password}
    with processes(tmp_path) as procs:
        procs.start("beat", "-m", "scheduler.cli", "beat", "-l", "DEBUG", env={**FAST, **env})
        procs.start(
            "worker",
            "-m",
            "scheduler.cli",
            "worker",
            "-P",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            env=env,
        )
        query(
            database_url,
            "INSERT INTO schedules (name, task, interval_seconds) VALUES ('j', 'demo.fail', 1)",
        )
        wait_for(lambda: '"execution_id"' in procs.logs(tail=None), timeout_s=40, interval_s=0.3)
        cli = procs.start(
            "cli",
            "-m",
            "scheduler.cli",
            "history",
            env={"SCHEDULER_LOG_FORMAT": "json", "DATABASE_URL": unreachable},
        )
        assert cli.wait(timeout=30) == 2
    text = procs.logs(tail=None)
    assert secret not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert records
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    assert any(r["logger"].startswith("scheduler") for r in records)
    failed = [r for r in records if r.get("execution_id") and r.get("task") == "demo.fail"]
    assert failed, text[-3000:]
