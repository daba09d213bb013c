"""Where a task's message goes: the app's `task_queues`, `task_routes` and exchanges, resolved
as `send_task` resolves them (the publisher caches the result per task and queue)."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Exchange

from scheduler.broker.connections import Route

DELIVERY_MODES = {"persistent": 2, "transient": 1}


def resolve_route(app: Celery, task: str, queue_name: str | None) -> Route:
    """Where `send_task(task, queue=queue_name)` sends a message, as the app's router and
    queues say: a plain queue name is the anonymous exchange with the queue as routing key."""
    conf = app.conf
    routed = app.amqp.router.route({"queue": queue_name} if queue_name else {}, task, (), {})
    queue = routed.get("queue")
    exchange = routed.get("exchange")
    routing_key = routed.get("routing_key")
    if isinstance(exchange, Exchange):
        exchange = exchange.name
    name = str(queue.name if queue is not None else conf.task_default_queue)
    exchange_type = queue.exchange.type if queue is not None else "direct"
    if (not exchange or not routing_key) and exchange_type == "direct":
        exchange, routing_key = "", name
    elif exchange is None:
        exchange = queue.exchange.name or conf.task_default_exchange or ""
        routing_key = routing_key or queue.routing_key or conf.task_default_routing_key
    mode = getattr(getattr(queue, "exchange", None), "delivery_mode", None)
    mode = mode or conf.task_default_delivery_mode
    delivery_mode = DELIVERY_MODES.get(mode, mode) if isinstance(mode, str) else mode
    return Route(
        queue=name,
        exchange=str(exchange or ""),
        routing_key=str(routing_key or name),
        delivery_mode=int(delivery_mode or 2),
        declare=queue,
    )
