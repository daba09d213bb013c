"""Secrets out of everything shown or logged: URLs of any shape, and the passwords of the
URLs this process was given wherever they appear (a third-party error may quote a piece of
one, as urllib does with "Port could not be cast to integer value as '...'")."""

from __future__ import annotations

import os
import re

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.S)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{},]+")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|pass|secret|token|sslpassword|sslkey|api_key|key)=)"
    r"[^&;#\s'\"]*"
)
_URL_ENV = re.compile(r"(?i)(^|_)(URL|DSN|BACKEND)$")


def userinfo_split(url: str) -> tuple[str, str | None, str, str] | None:
    """(scheme://, user, password or None, the rest after `@`), reading the password up to
    the last `@` so an unencoded `/`, `#` or `?` in it is still taken for the password."""
    match = _SCHEME.match(url)
    if not match:
        return None
    scheme, rest = match.groups()
    at = rest.rfind("@")
    if at == -1:
        return None
    userinfo, after = rest[:at], rest[at + 1 :]
    if ":" not in userinfo:
        return None
    user, password = userinfo.split(":", 1)
    return f"{scheme}{user}", password, after, scheme


def redact(url: str) -> str:
    """`url` with its password and secret query parameters replaced by `***`."""
    text = str(url)
    parts = userinfo_split(text)
    if parts is not None:
        head, _password, after, _scheme = parts
        text = f"{head}:{MASK}@{after}"
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, text)


def known_secrets() -> list[str]:
    """Passwords of the URLs in this process's environment (and their pieces between the
    characters a URL parser splits at), longest first."""
    found: set[str] = set()
    for name, value in os.environ.items():
        if not _URL_ENV.search(name) or "://" not in value:
            continue
        parts = userinfo_split(value.strip())
        secrets = [] if parts is None or not parts[1] else [parts[1]]
        secrets += [m.group(0).split("=", 1)[1] for m in _SECRET_PARAM.finditer(value)]
        for secret in secrets:
            if len(secret) >= 4:
                found.add(secret)
            found.update(p for p in re.split(r"[/#?@:]", secret) if len(p) >= 4)
    return sorted(found, key=len, reverse=True)


def redact_text(text: str) -> str:
    """`text` with every URL redacted and every known password masked."""
    value = _URL.sub(lambda m: redact(m.group(0)), str(text))
    for secret in known_secrets():
        value = value.replace(secret, MASK)
    return value
