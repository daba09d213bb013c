"""URL handling: schemes, redaction, settings from the environment."""

from __future__ import annotations

import pytest

from config.settings import Settings
from scheduler.core.exceptions import ConfigurationError
from scheduler.runtime.urls import check_broker_url, normalize_database_url, redact


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/db",
        "postgres://u@h/db",
        "postgresql+asyncpg://u@h/db",
        "POSTGRESQL://u@h/db",
    ],
)
def test_postgres_urls_become_asyncpg(url: str) -> None:
    assert normalize_database_url(url) == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///x.db", "h/db", ""])
def test_other_database_schemes_are_refused_in_one_line(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_database_url(url)
    assert "\n" not in str(info.value)
    assert "DATABASE_URL must be a PostgreSQL URL" in str(info.value)


def test_broker_scheme_is_checked() -> None:
    assert check_broker_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert check_broker_url(" amqp://guest:guest@h:5672// ") == "amqp://guest:guest@h:5672//"
    with pytest.raises(ConfigurationError, match="scheme 'http' is not supported"):
        check_broker_url("http://example/")


@pytest.mark.parametrize("url", ["sqs://key:secret@", "kafka://h:9092", "h:6379", ""])
def test_unsupported_broker_schemes_are_refused_in_one_line_naming_the_supported(
    url: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_broker_url(url)
    message = str(info.value)
    assert "\n" not in message
    assert "is not supported" in message
    for scheme in ("redis://", "sentinel://", "amqp://"):
        assert scheme in message
    assert "secret" not in message


def test_sentinel_urls_need_a_master_name_and_sentinel_parts() -> None:
    url = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/0"
    assert check_broker_url(url, "mymaster") == url
    with pytest.raises(ConfigurationError, match="SCHEDULER_BROKER_MASTER_NAME"):
        check_broker_url(url)
    with pytest.raises(ConfigurationError, match="every ';'-separated part"):
        check_broker_url("sentinel://h:26379;redis://h:6379", "mymaster")
    assert redact("sentinel://:pw@a:26379;sentinel://:pw@b:26379") == (
        "sentinel://:***@a:26379;sentinel://:***@b:26379"
    )


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("redis://:pw@r:6379/0") == "redis://:***@r:6379/0"
    assert (
        redact("postgresql+asyncpg://app@/x?host=/tmp") == "postgresql+asyncpg://app@/x?host=/tmp"
    )


def test_settings_read_standard_and_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@b/c")
    monkeypatch.setenv("BROKER_URL", "redis://r/1")
    monkeypatch.setenv("SCHEDULER_BEAT_MAX_BATCH", "77")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://a@b/c"
    assert settings.broker_url == "redis://r/1"
    assert settings.beat_max_batch == 77
    assert settings.beat_default_misfire_grace_s == 60


def test_settings_repr_never_shows_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a:topsecret@b/c")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings)
