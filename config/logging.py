"""Logging for every process: one line per record, time, level, logger, message."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Every line (message, exception text, traceback) with URLs and known passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        from scheduler.redaction import redact_text

        return redact_text(super().format(record))


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: adds a handler to the root logger only when it has none."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(RedactingFormatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())
