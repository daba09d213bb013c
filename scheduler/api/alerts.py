"""What is watched: alert rules and their deliveries, and which schedules have their own
metrics series."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config.settings import get_settings
from scheduler.api.units import blocking, within
from scheduler.core.exceptions import AlertRuleNotFound
from scheduler.runtime.db import get_runtime
from scheduler.store.alerts import AlertStore
from scheduler.store.monitoring import MonitoringStore

if TYPE_CHECKING:
    from scheduler.observability.alerts import Outcome


async def aadd_alert_rule(values: Mapping[str, Any]) -> int:
    """Insert a rule (the columns `observability.alerts.rule_values` makes); its id."""
    return await within(None, AlertStore.insert_rule, values)


async def alist_alert_rules() -> list[dict[str, Any]]:
    """Every rule (secrets left out) with its delivery counts."""
    return await within(None, AlertStore.list_rules)


async def aalert_deliveries(*, limit: int = 200) -> list[dict[str, Any]]:
    return await within(None, AlertStore.deliveries, limit=limit)


async def aremove_alert_rule(name: str) -> None:
    """Remove rule `name` and its delivery records; AlertRuleNotFound when there is none."""
    if not await within(None, AlertStore.delete_rule, name):
        raise AlertRuleNotFound(name)


async def atest_alert_rule(name: str) -> tuple[uuid.UUID, Outcome]:
    """Send a `test` event through rule `name` now: (delivery id, how it went)."""
    from scheduler.observability.alerts import celery_send_task, send_test

    send_task = None
    if get_settings().broker_url is not None:
        from config.celery import app

        send_task = celery_send_task(app)
    result = await send_test(get_runtime().sessions, get_settings(), name, send_task)
    if result is None:
        raise AlertRuleNotFound(name)
    return result


async def aset_monitored(glob: str, monitored: bool) -> list[str]:
    """Give the schedules matching `glob` their own metrics series (or take them away);
    the names of those it matched."""
    from scheduler.observability.alerts import glob_regex

    return await within(None, MonitoringStore.set_monitored, glob_regex(glob), monitored)


add_alert_rule = blocking(aadd_alert_rule)
list_alert_rules = blocking(alist_alert_rules)
alert_deliveries = blocking(aalert_deliveries)
remove_alert_rule = blocking(aremove_alert_rule)
test_alert_rule = blocking(atest_alert_rule)
set_monitored = blocking(aset_monitored)
