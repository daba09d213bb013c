"""The database and broker URLs every process uses: resolved, checked, redacted.

When `DATABASE_URL` / `BROKER_URL` are set they are used as given (checked: PostgreSQL only,
a supported broker scheme, passwords percent-encoded). Otherwise `resolve_urls` starts the
embedded servers (`scheduler.runtime.embedded`); importing this module starts nothing and
connects nowhere.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from config.settings import Settings, get_settings
from scheduler.core import redaction
from scheduler.core.exceptions import ConfigurationError
from scheduler.runtime.embedded import EmbeddedServices, ServiceUrls

__all__ = [
    "BROKER_SCHEMES",
    "ServiceUrls",
    "broker_scheme",
    "broker_transport_options",
    "check_broker_url",
    "normalize_database_url",
    "redact",
    "redact_text",
    "resolve_broker_url",
    "resolve_database_url",
    "resolve_urls",
]


def normalize_database_url(url: str) -> str:
    """Return `url` in SQLAlchemy's asyncpg form; reject anything that is not PostgreSQL."""
    _check_userinfo("DATABASE_URL", url.strip())
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
    raise ConfigurationError(
        f"DATABASE_URL must be a PostgreSQL URL (postgresql+asyncpg://user@host/db), "
        f"got scheme {parts.scheme or '(none)'!r}"
    )


BROKER_SCHEMES = (
    "redis",
    "rediss",
    "redis+socket",
    "unix",
    "sentinel",
    "amqp",
    "amqps",
    "pyamqp",
    "memory",
)
"""Broker URL schemes this project publishes to (each with its own tested path, see README)."""


def broker_scheme(url: str) -> str:
    """The scheme of a broker URL (of its first part when Sentinel URLs are `;`-separated)."""
    return urlsplit(url.strip().split(";", 1)[0].strip()).scheme.lower()


def check_broker_url(url: str, master_name: str | None = None) -> str:
    """`url` stripped, or ConfigurationError (one line) naming the supported schemes."""
    for part in url.strip().split(";"):
        _check_userinfo("BROKER_URL", part.strip())
    scheme = broker_scheme(url)
    if scheme not in BROKER_SCHEMES:
        raise ConfigurationError(
            f"BROKER_URL scheme {scheme or '(none)'!r} is not supported: use redis://, "
            "rediss://, sentinel:// (with SCHEDULER_BROKER_MASTER_NAME), amqp:// or amqps://"
        )
    parts = [p.strip() for p in url.strip().split(";") if p.strip()]
    if scheme == "sentinel":
        if any(broker_scheme(p) != "sentinel" for p in parts):
            raise ConfigurationError(
                "BROKER_URL: every ';'-separated part must be a sentinel:// URL"
            )
        if not (master_name or "").strip():
            raise ConfigurationError(
                "a sentinel:// BROKER_URL needs SCHEDULER_BROKER_MASTER_NAME (the master to follow)"
            )
    return url.strip()


def broker_transport_options(settings: Settings | None = None) -> dict[str, Any]:
    """Celery's `broker_transport_options` these settings call for (Sentinel: `master_name`)."""
    settings = settings or get_settings()
    if settings.broker_master_name:
        return {"master_name": settings.broker_master_name}
    return {}


def redact(url: str) -> str:
    """`url` with any password replaced by `***`: safe to print and log, whatever its shape
    (`?password=`, unencoded `#`, `/`, `?` in the password; each part of a `;`-separated
    Sentinel list)."""
    if ";" in url:
        return ";".join(redaction.redact(part) for part in url.split(";"))
    return redaction.redact(url)


def redact_text(text: str) -> str:
    """`text` (an error message, a log line) with every URL and known password masked."""
    return redaction.redact_text(text)


def _check_userinfo(label: str, url: str) -> None:
    parts = redaction.userinfo_split(url)
    if parts is not None and parts[1] and re.search(r"[/#?@\s]", parts[1]):
        raise ConfigurationError(
            f"{label}: percent-encode the password's special characters "
            "(/ as %2F, # as %23, ? as %3F, @ as %40)"
        )


def resolve_urls(settings: Settings | None = None) -> ServiceUrls:
    """The database and broker URLs of this process, starting embedded services if needed."""
    settings = settings or get_settings()
    if settings.database_url and settings.broker_url:
        return ServiceUrls(
            normalize_database_url(settings.database_url),
            check_broker_url(settings.broker_url, settings.broker_master_name),
        )
    embedded = EmbeddedServices(settings.state_dir).up()
    return ServiceUrls(
        normalize_database_url(settings.database_url)
        if settings.database_url
        else embedded.database_url,
        check_broker_url(settings.broker_url, settings.broker_master_name)
        if settings.broker_url
        else embedded.broker_url,
    )


def resolve_database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        return normalize_database_url(settings.database_url)
    return resolve_urls(settings).database_url


def resolve_broker_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.broker_url:
        return check_broker_url(settings.broker_url, settings.broker_master_name)
    return resolve_urls(settings).broker_url
