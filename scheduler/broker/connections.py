"""Broker connections of the beat's publisher: Redis (plain or through Sentinel) and RabbitMQ.

Redis: one client; a pipeline's replies are the broker's confirmation. Behind Sentinel the
client asks the sentinels for the current master on every new connection, so after a
failover the next publish goes to the new master (a publish to a demoted master fails, and
its runs stay `pending` for the sweep).

RabbitMQ: one connection and one channel in confirm mode. A batch is published without
waiting, then the publisher waits once for the broker's acks of every message in it; a
nack, a returned (unroutable) message or no answer within the bound fails the whole batch.
Destinations are declared once per connection, as `send_task` declares them.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from amqp.exceptions import NotFound
from amqp.serialization import dumps as amqp_dumps
from redis.sentinel import Sentinel

from scheduler.core.exceptions import ConfigurationError

log = logging.getLogger(__name__)

REDIS_PRIORITY_STEPS = (3, 6, 9)
"""kombu's Redis transport keeps priorities 1-9 in these extra lists per queue."""
REDIS_PRIORITY_SEP = "\x06\x16"


class PublishNotConfirmed(Exception):
    """The broker did not confirm every message of a batch (nack, returned or timed out)."""


def is_redis(url: str) -> bool:
    return url.strip().lower().startswith(("redis://", "rediss://", "unix://", "redis+socket://"))


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def is_amqp(url: str) -> bool:
    return url.strip().lower().startswith(("amqp://", "amqps://", "pyamqp://"))


def sentinel_client(url: str, master_name: str | None, **kwargs: Any) -> redis.Redis:
    """A client of the current master behind the sentinels of `url`
    (`sentinel://[:password@]host:port[/db][;sentinel://host:port...]`, as kombu takes it)."""
    if not master_name:
        raise ConfigurationError(
            "a sentinel:// broker needs the master_name transport option "
            "(SCHEDULER_BROKER_MASTER_NAME)"
        )
    hosts: list[tuple[str, int]] = []
    db = 0
    password: str | None = None
    username: str | None = None
    for part in url.split(";"):
        part = part.strip()
        if not part:
            continue
        parsed = urlsplit(part)
        hosts.append((parsed.hostname or "127.0.0.1", parsed.port or 26379))
        path = parsed.path.strip("/")
        if path.isdigit():
            db = int(path)
        if parsed.password:
            password = unquote(parsed.password)
            username = unquote(parsed.username) if parsed.username else None
    timeouts = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)
    client: redis.Redis = sentinel.master_for(
        master_name, db=db, password=password, username=username, **kwargs
    )
    return client


def redis_client(url: str, master_name: str | None = None, **kwargs: Any) -> redis.Redis:
    """A client for a Redis broker URL, plain or Sentinel."""
    if is_sentinel(url):
        return sentinel_client(url, master_name, **kwargs)
    client: redis.Redis = redis.Redis.from_url(url, **kwargs)
    return client


def redis_queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in `queue` (its priority lists included), not counting ones a worker
    has already taken (kombu's unacked set)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    for step in REDIS_PRIORITY_STEPS:
        pipe.llen(f"{queue}{REDIS_PRIORITY_SEP}{step}")
    return sum(int(n) for n in pipe.execute())


# --- AMQP 0-9-1 basic.publish frames, built without py-amqp's per-message encoder --------
# py-amqp encodes a message's header table item by item in Python and writes each message
# with a syscall of its own (~250 us a message here); a task message's headers are mostly the
# same from one message to the next, so their encodings are cached, and a batch is one write.

_pack_frame = struct.Struct(">BHI").pack
_pack_length = struct.Struct(">I").pack
_FRAME_END = b"\xce"
BASIC_CLASS = 60
BASIC_PUBLISH = 40
_BASIC_FLAGS = 0xFE00
"""content-type, content-encoding, headers, delivery-mode, priority, correlation-id,
reply-to: the properties kombu sets on a task message (bits 15 to 9)."""
_ITEM_CACHE_MAX = 4096
_item_cache: dict[tuple[str, str], bytes] = {}


def _shortstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes((len(data),)) + data


def _table_item(key: str, value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        prefix: bytes | None = _item_cache.get((key, ""))
        if prefix is None:
            prefix = _item_cache[(key, "")] = _shortstr(key) + b"S"
        data = str(value).encode("utf-8", "surrogatepass")
        return prefix + _pack_length(len(data)) + data
    cache_key = (key, f"{kind.__name__}:{value!r}")
    item = _item_cache.get(cache_key)
    if item is None:
        item = bytes(amqp_dumps("F", [{key: value}]))[4:]
        if len(_item_cache) < _ITEM_CACHE_MAX:
            _item_cache[cache_key] = item
    return item


def encode_table(table: dict[str, Any]) -> bytes:
    """An AMQP field table, byte for byte as py-amqp writes it."""
    content = b"".join([_table_item(k, v) for k, v in table.items()])
    return _pack_length(len(content)) + content


def encode_properties(
    *,
    content_type: str,
    content_encoding: str,
    headers: dict[str, Any],
    delivery_mode: int,
    priority: int,
    correlation_id: str,
    reply_to: str,
) -> bytes:
    """Basic property flags and list, as py-amqp's `Message._serialize_properties`."""
    return b"".join(
        [
            struct.pack(">H", _BASIC_FLAGS),
            _shortstr(content_type),
            _shortstr(content_encoding),
            encode_table(headers),
            bytes((delivery_mode, priority)),
            _shortstr(correlation_id),
            _shortstr(reply_to),
        ]
    )


@dataclass(frozen=True)
class EncodedMessage:
    """A message's basic.publish method arguments, content header and body, without the
    channel framing (added when sent, so it survives a reconnect)."""

    method: bytes
    header: bytes
    body: bytes
    _framed: dict[tuple[int, int], bytes] = field(default_factory=dict, compare=False, repr=False)

    def framed(self, channel_id: int, frame_max: int) -> bytes:
        """The message's frames on `channel_id`, built once per channel and frame size (a
        run written ahead is framed when it is prepared, so its slot costs only the write)."""
        key = (channel_id, frame_max)
        data = self._framed.get(key)
        if data is None:
            self._framed.clear()  # a reconnect: the old channel's framing is of no use
            data = self._framed[key] = b"".join(frames(self, channel_id, frame_max))
        return data


def encode_publish(
    exchange: str, routing_key: str, properties: bytes, body: bytes, *, mandatory: bool = True
) -> EncodedMessage:
    method = b"".join(
        [
            struct.pack(">HHH", BASIC_CLASS, BASIC_PUBLISH, 0),
            _shortstr(exchange),
            _shortstr(routing_key),
            b"\x01" if mandatory else b"\x00",
        ]
    )
    header = struct.pack(">HHQ", BASIC_CLASS, 0, len(body)) + properties
    return EncodedMessage(method, header, body)


def frames(message: EncodedMessage, channel_id: int, frame_max: int) -> list[bytes]:
    """The method, header and body frames of one message on `channel_id`."""
    out = [
        _pack_frame(1, channel_id, len(message.method)),
        message.method,
        _FRAME_END,
        _pack_frame(2, channel_id, len(message.header)),
        message.header,
        _FRAME_END,
    ]
    chunk = frame_max - 8
    body = message.body
    for start in range(0, len(body), chunk):
        part = body[start : start + chunk]
        out += [_pack_frame(3, channel_id, len(part)), part, _FRAME_END]
    return out


@dataclass(frozen=True)
class Route:
    """Where a task's message goes, as `send_task` would send it."""

    queue: str
    exchange: str
    routing_key: str
    delivery_mode: int
    declare: Any = None
    """The kombu Queue to declare (with its exchange and binding) before publishing."""


class ConfirmingChannel:
    """One RabbitMQ connection and a channel in confirm mode; not thread-safe."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        """A connected kombu Connection on the py-amqp transport."""
        self.channel: Any = connection.channel()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._acked)
        self.channel.events["basic_nack"].add(self._nacked)
        self.channel.events["basic_return"].add(self._returned)
        self.declared: set[str] = set()
        self._sent = 0
        self._confirmed = 0
        self._singles: set[int] = set()
        self._refused: list[str] = []

    def _acked(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._confirmed = max(self._confirmed, delivery_tag)
        else:
            self._singles.add(delivery_tag)
        while self._confirmed + 1 in self._singles:
            self._confirmed += 1
            self._singles.discard(self._confirmed)

    def _nacked(self, delivery_tag: int, multiple: bool) -> None:
        self._refused.append(f"nack for message {delivery_tag}")
        self._acked(delivery_tag, multiple)

    def _returned(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._refused.append(
            f"unroutable: exchange {exchange!r} routing key {routing_key!r} ({exc})"
        )

    def declare(self, route: Route) -> None:
        if route.declare is None or route.queue in self.declared:
            return
        route.declare(self.channel).declare()
        self.declared.add(route.queue)

    def publish(self, messages: Iterable[EncodedMessage]) -> None:
        """Write the messages in one go (the confirms are awaited by `wait_confirmed`)."""
        connection = self.connection.connection
        channel_id, frame_max = self.framing
        parts = [message.framed(channel_id, frame_max) for message in messages]
        if parts:
            connection.transport.write(b"".join(parts))
            self._sent += len(parts)

    @property
    def framing(self) -> tuple[int, int]:
        """(channel id, frame size) of this channel: what a message's frames depend on."""
        return int(self.channel.channel_id), int(self.connection.connection.frame_max)

    def wait_confirmed(self, timeout_s: float) -> None:
        """Block until every message sent so far is acked; raise PublishNotConfirmed if one
        was refused or returned, or when the broker does not answer within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self._confirmed < self._sent:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(
                    f"RabbitMQ confirmed {self._confirmed} of {self._sent} messages "
                    f"within {timeout_s:g} s"
                )
            try:
                self.connection.connection.drain_events(timeout=remaining)
            except TimeoutError:
                continue
        if self._refused:
            refused, self._refused = self._refused, []
            raise PublishNotConfirmed(f"RabbitMQ refused {len(refused)} message(s): {refused[0]}")

    def queue_depth(self, queue: str) -> int | None:
        """Ready messages in `queue` (not those delivered to a worker and not yet acked);
        None when the queue does not exist: the broker then closes the channel, and this
        object must be dropped."""
        try:
            _, count, _ = self.channel.queue_declare(queue=queue, passive=True)
        except NotFound:
            return None
        return int(count)

    def close(self) -> None:
        try:
            self.connection.release()
        except Exception:  # a broken connection may fail to close; it is dropped anyway
            log.debug("closing a broken RabbitMQ connection failed", exc_info=True)


def queue_names(routes: Iterable[Route]) -> list[str]:
    return sorted({r.queue for r in routes})
