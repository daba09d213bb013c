"""Optional single-leader mode: only the beat holding a Redis lock dispatches.

Not needed for correctness (the database makes each slot run once with any number of
beats); it is for those who want exactly one active beat, e.g. to keep database load from
standby beats at zero. It is RedBeat's lock: a redis-py `Lock` whose renewal is RedBeat's
extend-to script (each renewal sets the expiry anew instead of adding to it), with a timeout
of seconds rather than RedBeat's 25 minutes: a standby takes over within
`beat_leader_lock_timeout_s` of the leader dying. Unlike RedBeat's beat, which blocks at
start-up until it gets the lock, a standby here keeps asking without blocking, so it stops
cleanly on SIGTERM. Enable with SCHEDULER_BEAT_LEADER_LOCK=true.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT

from scheduler.broker.connections import redis_client

log = logging.getLogger(__name__)
LOCK_KEY = "scheduler:beat:leader"


class LeaderLock:
    def __init__(
        self,
        redis_url: str,
        timeout_s: float,
        key: str = LOCK_KEY,
        *,
        master_name: str | None = None,
    ) -> None:
        """`redis_url` may be a `sentinel://` URL (with `master_name`): the lock lives on the
        current master."""
        self.client = redis_client(
            redis_url, master_name, socket_timeout=5, socket_connect_timeout=5
        )
        self.timeout_s = timeout_s
        self.retry_s = max(0.1, timeout_s / 3)
        # not thread-local: the beat may renew from one thread and release from another
        self._lock: Any = self.client.lock(key, timeout=timeout_s, thread_local=False)
        self._lock.lua_extend = self.client.register_script(LUA_EXTEND_TO_SCRIPT)
        self.leading = False

    def hold(self) -> bool:
        """Take or renew the lock; False when another beat leads (or Redis is unreachable)."""
        try:
            taken = self._renewed() or bool(self._lock.acquire(blocking=False))
        except redis.RedisError as exc:
            log.warning("leader lock unavailable (%s): not dispatching", exc)
            taken = False
        if taken != self.leading:
            log.info("this beat %s the leader", "is now" if taken else "is no longer")
        self.leading = taken
        return taken

    def _renewed(self) -> bool:
        if not self.leading:
            return False
        try:
            return bool(self._lock.extend(self.timeout_s))
        except redis.exceptions.LockNotOwnedError:
            # it expired and another beat may hold it now: acquire decides
            self._lock.local.token = None
            return False

    def release(self) -> None:
        try:
            if self.leading:
                self._lock.release()
        except redis.RedisError:
            pass  # expired or Redis gone: the key times out on its own
        finally:
            self.leading = False
            self.client.close()
