"""Hand-made malformed broker messages against a real worker of this project, on Redis and
on RabbitMQ: each is logged and taken off the queue, and the worker keeps consuming."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.connection import Connection as _Connection
from kombu.entity import Exchange as _Exchange
from kombu.entity import Queue as _Queue

from tests.support.procs import ROOT, processes, wait_for

Connection: Any = _Connection
Exchange: Any = _Exchange
Queue: Any = _Queue
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
MALFORMED = {
    "a mapping": json.dumps({"a": 1}).encode(),
    "wrong entries": json.dumps([1, 2, 3]).encode(),
    "not JSON": b"[not json",
}


def headers(task_id: str, task: str = "demo.noop") -> dict[str, Any]:
    return {
        "lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
        "group": None, "retries": 0, "eta": None, "expires": None,
        "timelimit": [None, None], "argsrepr": "()", "kwargsrepr": "{}", "origin": "test",
    }  # fmt: skip


def redis_message(queue: str, body: str, task_id: str) -> str:
    """A message as kombu's Redis transport stores it in the queue's list."""
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers(task_id),
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def worker_args(queue: str) -> list[str]:
    return ["-m", "scheduler.cli", "worker", "-P", "solo", "-Q", queue, "-l", "INFO"]


def test_malformed_messages_on_redis_are_discarded_and_the_worker_goes_on(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    queue = f"guard-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(broker_url)
    good = str(uuid.uuid4())
    bodies = [b64(raw) for raw in MALFORMED.values()] + ["!!! not base64 !!!"]
    try:
        for body in bodies:
            client.lpush(queue, redis_message(queue, body, str(uuid.uuid4())))
        client.lpush(queue, redis_message(queue, b64(json.dumps([[], {}, {}]).encode()), good))
        with processes(tmp_path) as procs:
            worker = procs.start("worker", *worker_args(queue))
            wait_for(lambda: f"{good}] succeeded" in procs.logs(None), timeout_s=60, interval_s=0.1)
            logs = procs.logs(None)
            assert worker.poll() is None, logs
            assert logs.count("discarded malformed message") == 4, logs
            assert "Unrecoverable error" not in logs
            assert "is not Celery's [args, kwargs, embed] list" in logs
            assert "body cannot be read" in logs
            assert client.llen(queue) == 0
            assert client.hlen("unacked") == 0
    finally:
        client.delete(queue)
        client.close()


def test_malformed_messages_on_rabbitmq_are_discarded_and_the_worker_goes_on(
    database_url: str, tmp_path: Path
) -> None:
    try:
        with Connection(AMQP_URL, connect_timeout=3) as probe:
            probe.ensure_connection(max_retries=1)
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"RabbitMQ at {AMQP_URL} unreachable: {exc}")
    queue_name = f"guard-{uuid.uuid4().hex}"
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    good = str(uuid.uuid4())
    with Connection(AMQP_URL) as conn:
        producer = conn.Producer()
        for raw in MALFORMED.values():
            producer.publish(
                raw, exchange=queue.exchange, routing_key=queue_name, declare=[queue],
                content_type="application/json", content_encoding="utf-8",
                headers=headers(str(uuid.uuid4())), serializer=None,
            )  # fmt: skip
        producer.publish(
            json.dumps([[], {}, {}]).encode(), exchange=queue.exchange, routing_key=queue_name,
            content_type="application/json", content_encoding="utf-8", headers=headers(good),
        )  # fmt: skip
        try:
            with processes(tmp_path) as procs:
                worker = procs.start(
                    "worker", *worker_args(queue_name), env={"BROKER_URL": AMQP_URL}
                )
                wait_for(
                    lambda: f"{good}] succeeded" in procs.logs(None), timeout_s=60, interval_s=0.1
                )
                logs = procs.logs(None)
                assert worker.poll() is None, logs
                assert logs.count("discarded malformed message") == 3, logs
                assert "Unrecoverable error" not in logs
            left = queue(conn.default_channel).queue_declare(passive=True)
            assert left.message_count == 0
        finally:
            queue(conn.default_channel).delete()
            queue.exchange(conn.default_channel).delete()


def test_a_worker_that_crashes_does_not_exit_0(database_url: str, broker_url: str) -> None:
    result = subprocess.run(
        [sys.executable, *worker_args(f"crash-{uuid.uuid4().hex[:8]}"),
         "-I", "tests.acceptance.crash_on_start"],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert "Unrecoverable error" in result.stderr + result.stdout
    assert result.returncode != 0
