"""Optional single-leader mode: only the beat holding a Redis lock dispatches.

Not needed for correctness (the database makes each slot run once with any number of
beats); it is for those who want exactly one active beat, e.g. to keep database load from
standby beats at zero. It is the same kind of lock RedBeat uses (a Redis key with an
expiry, renewed while held), with a timeout of seconds rather than RedBeat's 25 minutes:
a standby takes over within `beat_leader_lock_timeout_s` of the leader dying.
Enable with SCHEDULER_BEAT_LEADER_LOCK=true.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

log = logging.getLogger(__name__)
LOCK_KEY = "scheduler:beat:leader"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, redis_url: str, timeout_s: float, key: str = LOCK_KEY) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.key = key
        self.timeout_ms = int(timeout_s * 1000)
        self.retry_s = max(0.1, timeout_s / 3)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = False

    def hold(self) -> bool:
        """Take or renew the lock; False when another beat leads (or Redis is unreachable)."""
        try:
            if self.leading and self.client.eval(_RENEW, 1, self.key, self.token, self.timeout_ms):
                return True
            taken = bool(self.client.set(self.key, self.token, nx=True, px=self.timeout_ms))
        except redis.RedisError as exc:
            log.warning("leader lock unavailable (%s): not dispatching", exc)
            taken = False
        if taken != self.leading:
            log.info("this beat %s the leader", "is now" if taken else "is no longer")
        self.leading = taken
        return taken

    def release(self) -> None:
        try:
            if self.leading:
                self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            pass
        finally:
            self.leading = False
            self.client.close()
