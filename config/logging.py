"""Logging for every process: one line per record, as text or JSON (`SCHEDULER_LOG_FORMAT`)."""

from __future__ import annotations

import logging

from scheduler.runtime.logs import TEXT_FORMAT as FORMAT
from scheduler.runtime.logs import formatter

__all__ = ["FORMAT", "configure_logging"]


def configure_logging(level: str = "INFO", log_format: str | None = None) -> None:
    """Idempotent: adds a handler to the root logger only when it has none."""
    if log_format is None:
        from config.settings import get_settings

        log_format = get_settings().log_format
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(log_format))
        root.addHandler(handler)
    root.setLevel(level.upper())
