"""Database URLs for the drivers that take a plain DSN (asyncpg's LISTEN, health checks).

Its own module so that the health port (imported by `config.celery`) does not import the beat.
"""

from __future__ import annotations


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy's `postgresql+asyncpg://` URL as a plain libpq-style DSN for asyncpg."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
