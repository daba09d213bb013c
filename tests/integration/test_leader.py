"""The optional leader lock: one holder at a time, taken over within its timeout."""

from __future__ import annotations

import time

from scheduler.beat.leader import LeaderLock


def test_one_leader_then_takeover_after_expiry_or_release(broker_url: str) -> None:
    first = LeaderLock(broker_url, timeout_s=0.5, key="test:leader")
    second = LeaderLock(broker_url, timeout_s=0.5, key="test:leader")
    try:
        assert first.hold()
        assert not second.hold()
        assert first.hold()  # renewal keeps it
        time.sleep(0.7)  # the leader stops renewing (it died): the lock expires
        assert second.hold()
        assert not first.hold()
        second.release()
        assert first.hold()
    finally:
        first.release()
        second.release()


def test_unreachable_redis_means_not_leading() -> None:
    lock = LeaderLock("redis://127.0.0.1:9/0", timeout_s=1, key="test:leader")
    try:
        assert not lock.hold()
    finally:
        lock.release()
