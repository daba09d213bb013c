"""Who is asking, per request: the caller from (in order) a Bearer token, HTTP Basic, the
session cookie, or the local admin while no account exists and the request comes from
loopback. `State` is what the application keeps between requests for this."""

from __future__ import annotations

import asyncio
import hashlib
import time

from starlette.requests import Request

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.web.auth import LOCAL_ACTOR, Principal, SignInLimiter, basic_credentials, is_loopback
from scheduler.web.bridge import call
from scheduler.web.problems import HTTPProblem

ACCOUNTS_CHECK_S = 2.0
BASIC_CACHE_S = 60.0


class State:
    """Per application: the sign-in limiter and a short cache of "does any account exist"."""

    def __init__(self, *, open_without_accounts: bool) -> None:
        self.open_without_accounts = open_without_accounts
        self.limiter = SignInLimiter()
        self._accounts: tuple[float, bool] | None = None
        self.basic_seen: dict[str, tuple[float, Principal]] = {}
        """Recently verified HTTP Basic credentials (by SHA-256 of the header), so a script
        polling the API does not pay a scrypt hash per request; kept BASIC_CACHE_S."""

    async def has_accounts(self) -> bool:
        now = asyncio.get_running_loop().time()
        if (
            self._accounts is None
            or now - self._accounts[0] > ACCOUNTS_CHECK_S
            or not self._accounts[1]
        ):
            self._accounts = (now, await call(api.ahas_accounts()))
        return self._accounts[1]


def state_of(request: Request) -> State:
    found: State = request.app.state.scheduler
    return found


def client_host(request: Request) -> str:
    return request.client.host if request.client else ""


def actor_of(request: Request) -> str:
    """The name the audit trail records for this request (set once its role is checked)."""
    return str(request.scope.get("scheduler.actor") or LOCAL_ACTOR)


async def principal_of(request: Request) -> Principal | None:
    """The caller, from (in order) a Bearer token, HTTP Basic, the session cookie; or the
    local admin when no account exists and the request comes from loopback."""
    cached = request.scope.get("scheduler.principal", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    found = await _find_principal(request)
    request.scope["scheduler.principal"] = found
    return found


async def _find_principal(request: Request) -> Principal | None:
    state = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        token = await call(api.aauthenticate_token(value.strip()))
        if token is None:
            raise HTTPProblem(401, "unknown or removed API token")
        return Principal(token[0], token[1], "token")
    if scheme.lower() == "basic" and value:
        return await _basic_principal(request, state, value.strip())
    if header:
        raise HTTPProblem(401, "unsupported Authorization scheme: use Bearer or Basic")
    user = request.session.get("user")
    if isinstance(user, str):
        role = await call(api.auser_role(user))
        if role is not None:
            return Principal(user, role, "session")
        request.session.pop("user", None)
    if (
        state.open_without_accounts
        and is_loopback(client_host(request))
        and not await state.has_accounts()
    ):
        return Principal(LOCAL_ACTOR, Role.ADMIN, "local")
    return None


async def _basic_principal(request: Request, state: State, value: str) -> Principal:
    pair = basic_credentials(value)
    if pair is None:
        raise HTTPProblem(401, "malformed HTTP Basic credentials")
    name, password = pair
    key = hashlib.sha256(value.encode()).hexdigest()
    now = time.monotonic()
    seen = state.basic_seen.get(key)
    if seen is not None and now - seen[0] < BASIC_CACHE_S:
        return seen[1]
    role = await check_password(
        request, name, password, {"WWW-Authenticate": 'Basic realm="scheduler"'}
    )
    found = Principal(name, role, "basic")
    if len(state.basic_seen) > 1000:
        state.basic_seen.clear()
    state.basic_seen[key] = (now, found)
    return found


async def check_password(
    request: Request, name: str, password: str, headers: dict[str, str] | None = None
) -> Role:
    """The role of `name` if `password` is right (HTTP Basic and the sign-in form); a wrong
    one counts against the client's and the name's sign-in limit."""
    limiter = state_of(request).limiter
    limiter.check(client_host(request), name)
    role = await call(api.aauthenticate_password(name, password))
    if role is None:
        limiter.failed(client_host(request), name)
        raise HTTPProblem(401, "wrong user name or password", headers)
    return role
