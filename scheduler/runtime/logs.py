"""Log records as text (the default) or one JSON object per line (`SCHEDULER_LOG_FORMAT=json`).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, and where known
`execution_id`, `task` (from the Celery task being run, or a record's `extra`) and
`schedule`; `exception` holds a traceback. Every line, text or JSON, goes through `redact`:
a password in a URL (`scheme://user:secret@host`) is printed as `***`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from scheduler.core.redaction import redact_text

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
_CONTEXT_KEYS = ("execution_id", "schedule", "task")


def redact(text: str) -> str:
    """`text` with every URL redacted, whatever its shape, and every known password masked
    (`scheduler.core.redaction`)."""
    return redact_text(text)


def _task_context() -> dict[str, str]:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return {}
    task = current_task
    request = getattr(task, "request", None) if task else None
    task_id = getattr(request, "id", None)
    if not task_id:
        return {}
    return {"execution_id": str(task_id), "task": str(task.name)}


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_task_context())
        for key in _CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else RedactingFormatter(TEXT_FORMAT)
