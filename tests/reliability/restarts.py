"""A run of many schedules through a beat and a worker with an outage in the middle, and the
figures it leaves: shared by the restart tests of each service."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.reliability.conftest import LONG, OwnServices
from tests.support.procs import Procs, processes, query, wait_for
from tests.support.status import SUCCESS, UNFINISHED

SCHEDULES = 200 if LONG else 20
RUN_S = 30 if LONG else 6
STALL_S = 30


def _start(own: OwnServices, procs: Procs) -> None:
    query(
        own.database_url,
        "INSERT INTO schedules (name, task, interval_seconds, misfire_grace_seconds) "
        f"SELECT 'tick-' || i, 'demo.noop', 1, 60 FROM generate_series(1, {SCHEDULES}) i",
    )
    procs.worker("-P", "threads", "-c", "4")
    procs.beat()
    wait_for(
        lambda: (
            query(
                own.database_url,
                f"SELECT count(*) AS n FROM executions WHERE status_id = {SUCCESS}",
            )[0]["n"]
            > 0
        ),
        timeout_s=60,
        interval_s=0.2,
    )


def _report(own: OwnServices, label: str) -> dict[str, int]:
    rows = query(
        own.database_url,
        "SELECT count(*) AS runs, count(DISTINCT (schedule_id, scheduled_for)) AS slots, "
        f"count(*) FILTER (WHERE status_id IN ({UNFINISHED})) AS active, "
        f"count(*) FILTER (WHERE status_id = {SUCCESS}) AS ok FROM executions",
    )[0]
    figures = {k: int(v) for k, v in rows.items()}
    print(f"\n[{label}] {figures}")
    return figures


def _settle(own: OwnServices) -> dict[str, int]:
    """Wait until no run is non-terminal. The worker may be draining a backlog slower than the
    schedules produced it (the long run makes 200 slots a second), so the wait fails only when
    the count of unfinished runs stops going down for STALL_S: a run stuck for good, not a queue
    still being worked through."""
    last_active = -1
    last_progress = time.monotonic()

    def settled() -> bool:
        nonlocal last_active, last_progress
        rows = query(
            own.database_url,
            f"SELECT count(*) AS n FROM executions WHERE status_id IN ({UNFINISHED})",
        )
        active = int(rows[0]["n"])
        if active != last_active:
            last_active, last_progress = active, time.monotonic()
        if active and time.monotonic() - last_progress > STALL_S:
            raise AssertionError(f"{active} runs made no progress for {STALL_S} s")
        return active == 0

    try:
        wait_for(settled, timeout_s=600, interval_s=0.5)
    except AssertionError:
        stuck = query(
            own.database_url,
            "SELECT status_id, count(*) AS n, min(created_at) AS oldest, max(queued_at) AS q "
            f"FROM executions WHERE status_id IN ({UNFINISHED}) GROUP BY status_id",
        )
        raise AssertionError(f"runs still not finished: {stuck}") from None
    return _report(own, "settled")


def restart_mid_run(own: OwnServices, outage: Callable[[], None]) -> dict[str, int]:
    """Run beat + worker, call `outage` (stop, wait, start a service) mid-run, let it settle."""
    with processes(own.log_dir) as procs:
        _start(own, procs)
        worker, beat = procs.running
        time.sleep(RUN_S / 2)
        before = _report(own, "before restart")
        outage()
        time.sleep(2)
        if worker.poll() is not None:
            # kombu's Redis transport can kill a worker whose connection drops while a message
            # is unacknowledged ("Unrecoverable error: AttributeError ... 'hostname'", on
            # restoring it): the worker is restarted as its supervisor would, and the test
            # still demands every run end once
            assert "Unrecoverable error" in procs.logs(tail=None), procs.logs()
            print("\n[worker restarted after a broker-transport crash]")
            worker = procs.worker("-P", "threads", "-c", "4")
        time.sleep(RUN_S)
        assert beat.poll() is None, procs.logs()
        assert worker.poll() is None, procs.logs()
        after = _report(own, "after restart")
        assert after["ok"] > before["ok"], procs.logs()
        query(own.database_url, "UPDATE schedules SET enabled = false")
        figures = _settle(own)
    assert figures["runs"] == figures["slots"], "a slot ran twice"
    return figures
