"""The parts of sign-in that need no database: the caller (`Principal`) and its role check,
HTTP Basic decoding, loopback addresses, CSRF tokens and the sign-in rate limit.
`scheduler.web.principals` finds a request's caller with them."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from starlette.requests import Request

from scheduler.core.accounts import Role
from scheduler.web.problems import HTTPProblem

LOCAL_ACTOR = "local"
SIGN_IN_ATTEMPTS = 5
SIGN_IN_WINDOW_S = 60.0


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: str
    """`token`, `basic`, `session` or `local` (no account exists, loopback only)."""

    @property
    def uses_cookie(self) -> bool:
        return self.via in ("session", "local")


def require(principal: Principal | None, role: Role) -> Principal:
    if principal is None:
        raise HTTPProblem(
            401, "sign in first: send a Bearer token or HTTP Basic credentials",
            {"WWW-Authenticate": 'Basic realm="scheduler"'},
        )  # fmt: skip
    if not principal.role.allows(role):
        raise HTTPProblem(
            403, f"the {principal.role.value} role may not do this ({role.value} needed)"
        )
    return principal


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def basic_credentials(header: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(header, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    expected = request.session.get("csrf")
    if not (isinstance(expected, str) and sent and hmac.compare_digest(expected, sent)):
        raise HTTPProblem(403, "the form's CSRF token is missing or stale: reload the page")


class SignInLimiter:
    """At most SIGN_IN_ATTEMPTS failed sign-ins per client address and per user name in
    SIGN_IN_WINDOW_S; more are refused with 429 until the window moves on."""

    def __init__(self, attempts: int = SIGN_IN_ATTEMPTS, window_s: float = SIGN_IN_WINDOW_S):
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def check(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"ip:{client}", f"user:{name}"):
                times = self._recent(key, now)
                if len(times) >= self.attempts:
                    wait = int(times[0] + self.window_s - now) + 1
                    raise HTTPProblem(
                        429, f"too many failed sign-ins: try again in {wait} s",
                        {"Retry-After": str(wait)},
                    )  # fmt: skip

    def failed(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"ip:{client}", f"user:{name}"):
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:
                self._failures = {k: v for k, v in self._failures.items() if v}
