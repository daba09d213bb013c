"""Least privilege: the database roles and their grants."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_READ = "SELECT"


_WRITE = "SELECT, INSERT, UPDATE"


_ALL = "SELECT, INSERT, UPDATE, DELETE"


ROLE_GRANTS: dict[str, dict[str, str]] = {
    "readonly": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": _READ,
        "executions": _READ,
        "audit_log": _READ,
    },
    "worker": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": "SELECT, UPDATE",
        "executions": _WRITE,
        "notification_rules": _READ,
        "notification_deliveries": "SELECT, INSERT",
    },
    "beat": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": _ALL,
        "executions": _ALL,
        "notification_rules": _READ,
        "notification_deliveries": _WRITE,
    },
    "operator": {
        "execution_statuses": _READ,
        "alembic_version": _READ,
        "schedules": _ALL,
        "executions": _ALL,
        "audit_log": "SELECT, INSERT",
        "notification_rules": _ALL,
        "notification_deliveries": _WRITE,
        "web_users": _ALL,
        "web_tokens": _ALL,
    },
}
"""What each process needs: a worker records runs (and, through them, pauses a failing
schedule, releases a buffered run and queues alert deliveries); a beat plans runs, syncs
`beat_schedule` rows and sends alerts; an operator also edits schedules (CLI, apply, prune,
import, the dashboard with its users and tokens) and writes the audit trail; readonly reads
history, stats, lists and the audit trail (never password hashes or webhook secrets)."""


def role_statements(prefix: str = "scheduler_") -> list[str]:
    """SQL creating the four group roles (NOLOGIN; grant them to login users) and their
    privileges. Re-running it is harmless."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
        raise ValueError("a role prefix is lower-case letters, digits and _")
    statements: list[str] = []
    for role, grants in ROLE_GRANTS.items():
        name = f"{prefix}{role}"
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
            f"THEN CREATE ROLE {name} NOLOGIN; END IF; END $$"
        )
        statements.append(f"GRANT USAGE ON SCHEMA public TO {name}")
        statements.extend(f"GRANT {p} ON {table} TO {name}" for table, p in grants.items())
        if any("INSERT" in privileges for privileges in grants.values()):
            statements.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}")
    return statements


async def apply_statements(session: AsyncSession, statements: Sequence[str]) -> None:
    for statement in statements:
        await session.execute(text(statement))
