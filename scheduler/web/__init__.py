"""The dashboard: `create_app()` is an ASGI application (pages and `/api/v1`)."""

from __future__ import annotations

from scheduler.web.app import create_app

__all__ = ["create_app"]
