"""Several replicas as one gateway: session feeds and ops figures shared over Redis.

With `redis_url` set, `open_replicas` links the live feed hub (`streams.hub`) to Redis pub/sub:

- Every item a replica publishes on a session's feed goes into a bounded `Outbox`; one task
  sends what waits there as one message per batch on the channel `<prefix>:feeds`, one
  connection, so other replicas receive a replica's items in the order it published them. Each
  replica listens on that channel and `accept`s what others sent into its own feeds (it skips
  its own echoes), so a reader on any replica sees a session's events from every replica, with
  the usual bounded queues, slow-reader drop and `Last-Event-ID` replay (ids: `FeedClock`).
- The ops board (`gateway.ops_snapshots`) publishes this replica's snapshot every interval and
  reads every other's.

Publishing never waits for Redis: `Outbox.put` is a bounded append. Overflow policy: when
`replica_outbox_events` items wait, a new item is dropped (not an older one, so what other
replicas receive stays in order: a reader there sees a gap in ids, never a reordering) and
counted in `coach_replica_feed_dropped_total{reason="outbox_full"}`.

Redis down: the local feeds and chat go on as if there were one replica. Items published
while the link is down are dropped at once (`reason="redis_down"`) rather than queued (a reader
elsewhere would get stale events in a burst later); `coach_replica_redis_up` reads 0, one log
line per interval says so (`gateway.logs.LogSampler`), and both tasks reconnect with a capped
backoff, so the link comes back by itself when Redis does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import zlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Histogram
from prometheus_client.core import Metric
from redis.asyncio import Redis

from gateway import metrics as m
from gateway.logs import LogSampler
from gateway.metrics import GatewayMetrics
from gateway.ops_snapshots import LINK_ERRORS, OpsBoard
from gateway.settings import Settings
from streams.hub import Entry, FeedClock, Hub

__all__ = [
    "Outbox",
    "Replicas",
    "decode_batch",
    "encode_batch",
    "node_of",
    "open_replicas",
    "replica_name",
]

log = logging.getLogger("coach.replicas")

MAX_BATCH = 512  # items per Redis message
# After the first item of a batch, the sender lingers this long for more: at load one message
# carries many items (each message costs both ends far more CPU than an item does), for at
# most this much more latency.
LINGER_S = 0.001
SEND_TIMEOUT_S = 2.0
LISTEN_POLL_S = 1.0
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)  # between reconnection attempts, the last one repeating

Item = tuple[str, str, Entry]  # (session id, owner, (seq, type, data))


def replica_name(settings: Settings) -> str:
    return settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"


def node_of(replica_id: str) -> int:
    """The `FeedClock` node number of a replica: from its id, the same on every start."""
    return zlib.crc32(replica_id.encode()) % (1 << FeedClock.NODE_BITS)


def encode_batch(replica_id: str, node: int, items: list[Item], sent_at: float = 0.0) -> bytes:
    """One message: a header line (sender, node, item count, wall-clock send time), then per
    item a JSON head line and its data bytes as sent to readers (not decoded and encoded
    again)."""
    parts = [orjson.dumps([replica_id, node, len(items), sent_at])]
    for session_id, owner, (seq, type, data) in items:
        parts.append(orjson.dumps([session_id, owner, seq, type, len(data)]))
        parts.append(data)
    return b"\n".join(parts)


def decode_batch(message: bytes) -> tuple[str, int, list[Item], float]:
    """`encode_batch` undone; `ValueError` for a message that is not one."""
    try:
        end = message.index(b"\n") if b"\n" in message else len(message)
        replica_id, node, count, sent_at = orjson.loads(message[:end])
        items: list[Item] = []
        pos = end + 1
        for _ in range(count):
            end = message.index(b"\n", pos)
            session_id, owner, seq, type, size = orjson.loads(message[pos:end])
            data = message[end + 1 : end + 1 + size]
            if len(data) != size:
                raise ValueError("truncated item")
            items.append((str(session_id), str(owner), (int(seq), str(type), data)))
            pos = end + 2 + size
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError("not a feed batch") from exc
    return str(replica_id), int(node), items, float(sent_at)


class Outbox:
    """Feed items waiting for Redis, at most `limit` (overflow: see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self._items: deque[Item] = deque()
        self._limit = limit
        self._ready = asyncio.Event()
        self.open = True  # False while the link to Redis is down: items are dropped at once
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, session_id: str, owner: str, entry: Entry) -> None:
        """`streams.hub.Relay`: never blocks."""
        if not self.open:
            self.dropped["redis_down"] += 1
        elif len(self._items) >= self._limit:
            self.dropped["outbox_full"] += 1
        else:
            self._items.append((session_id, owner, entry))
            self._ready.set()

    async def wait(self) -> None:
        """Until an item waits."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()

    def take_nowait(self, most: int) -> list[Item]:
        """Up to `most` items, oldest first."""
        count = min(most, len(self._items))
        return [self._items.popleft() for _ in range(count)]

    def close(self) -> None:
        """The link is down: drop what waits (counted) and whatever comes until `reopen`."""
        self.open = False
        self.dropped["redis_down"] += len(self._items)
        self._items.clear()

    def reopen(self) -> None:
        self.open = True


@dataclass(eq=False)
class Replicas:
    """This replica's link to the others (see the module docstring)."""

    replica_id: str
    client: Redis
    hub: Hub
    outbox: Outbox
    board: OpsBoard
    channel: str
    clock: FeedClock
    sent: int = 0
    received: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    lag: Histogram | None = None
    _up: dict[str, bool] = field(default_factory=lambda: {"send": True, "listen": False})
    # Parts that went down on a fault, so that coming back is worth a line (the listener is
    # also "down" before its first subscription and between two, which is not news).
    _faulted: set[str] = field(default_factory=set)
    _faults: LogSampler[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self._faults = LogSampler(10.0, _log_folded_faults)
        self._echo = orjson.dumps([self.replica_id, self.clock.node])[:-1] + b","  # `["id",n,`

    @property
    def up(self) -> bool:
        return all(self._up.values())

    async def run_sender(self) -> None:
        """Send what the outbox holds, a batch per message, for as long as the gateway runs."""
        node = self.clock.node
        while True:
            await self.outbox.wait()
            await asyncio.sleep(LINGER_S)
            batch = self.outbox.take_nowait(MAX_BATCH)
            if not batch:
                continue  # dropped meanwhile (the link went down)
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    message = encode_batch(self.replica_id, node, batch, time.time())
                    await self.client.publish(self.channel, message)
                self.sent += len(batch)
                self.messages["sent"] += 1
            except LINK_ERRORS as exc:
                self.outbox.dropped["redis_down"] += len(batch)
                self.outbox.close()
                self._down("send", exc)
                await self._until_reachable()
                self.outbox.reopen()
                self._back("send")

    async def run_listener(self) -> None:
        """Take other replicas' items into the hub; resubscribe after a failure."""
        attempt = 0
        while True:
            try:
                async with self._subscribed() as pubsub:
                    attempt = 0
                    self._back("listen")
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=LISTEN_POLL_S
                        )
                        if message is not None:
                            self.receive(message["data"])
            except LINK_ERRORS as exc:
                self._down("listen", exc)
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1

    def receive(self, message: bytes) -> None:
        if message.startswith(self._echo):
            return  # our own batch back: not even decoded
        try:
            replica_id, node, items, sent_at = decode_batch(message)
        except ValueError:
            log.warning("a message on %s is not a feed batch; ignored", self.channel)
            return
        if replica_id == self.replica_id:
            return  # our own batch back
        self.messages["received"] += 1
        if node == self.clock.node and self._faults.admit("node", replica_id):
            log.warning(
                "replicas %s and %s share feed node %d: set distinct `replica_id`s",
                self.replica_id,
                replica_id,
                node,
            )
        for session_id, owner, entry in items:
            self.hub.accept(session_id, owner, entry)
        self.received += len(items)
        if self.lag is not None:  # send to taken in here (one host's clocks, or NTP's error)
            self.lag.observe(max(0.0, time.time() - sent_at))

    @contextlib.asynccontextmanager
    async def _subscribed(self) -> AsyncIterator[Any]:
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            yield pubsub
        finally:
            self._up["listen"] = False
            with contextlib.suppress(*LINK_ERRORS):
                await pubsub.aclose()

    async def _until_reachable(self) -> None:
        for attempt in range(1_000_000_000):
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await self.client.ping()
                return
            except LINK_ERRORS:
                continue

    def _down(self, part: str, exc: BaseException) -> None:
        was_up = self._up[part]
        self._up[part] = False
        self._faulted.add(part)
        if was_up or self._faults.admit(part, type(exc).__name__):
            log.warning(
                "redis link (%s) down: feeds and ops show this replica only until it is back",
                part,
                extra={"part": part, "error": type(exc).__name__},
            )

    def _back(self, part: str) -> None:
        if part in self._faulted:
            self._faulted.discard(part)
            log.info("redis link (%s) back", part)
        self._up[part] = True

    def gauges(self) -> Iterator[Metric]:
        yield m.gauge(
            "coach_replica_redis_up",
            "1 while this replica's link to the others over Redis works, else 0.",
            1.0 if self.up else 0.0,
        )
        yield m.gauge(
            "coach_replica_outbox", "Feed items waiting to go to Redis.", len(self.outbox)
        )
        yield m.labelled_counter(
            "coach_replica_feed_dropped",
            "Feed items not sent to other replicas, by reason.",
            "reason",
            {
                reason: float(self.outbox.dropped[reason])
                for reason in ("outbox_full", "redis_down")
            },
        )
        yield m.labelled_counter(
            "coach_replica_feed_items",
            "Feed items sent to and received from other replicas.",
            "direction",
            {"sent": float(self.sent), "received": float(self.received)},
        )
        yield m.labelled_counter(
            "coach_replica_feed_messages",
            "Redis messages (batches of feed items) sent and received.",
            "direction",
            {"sent": float(self.messages["sent"]), "received": float(self.messages["received"])},
        )
        yield m.gauge(
            "coach_replicas", "Replicas seen on the ops board.", len(self.board.others) + 1
        )

    async def aclose(self) -> None:
        self._faults.close()
        await self.client.aclose()


async def open_replicas(
    settings: Settings,
    hub: Hub,
    local_snapshot: Callable[[], dict[str, Any]],
    metrics: GatewayMetrics,
    stack: contextlib.AsyncExitStack,
) -> Replicas | None:
    """Link `hub` and the ops board to the other replicas for the app's lifetime; None (one
    replica, as before) without `redis_url`."""
    if not settings.redis_url:
        return None
    replica_id = replica_name(settings)
    prefix = settings.redis_key_prefix
    client: Redis = Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
    )
    board = OpsBoard(client, prefix, replica_id, interval_s=settings.ops_snapshot_interval_s)
    clock = FeedClock(node_of(replica_id))
    outbox = Outbox(settings.replica_outbox_events)
    replicas = Replicas(replica_id, client, hub, outbox, board, f"{prefix}:feeds", clock)
    stack.push_async_callback(replicas.aclose)
    hub.link(clock, outbox.put)
    metrics.add_scrape(replicas.gauges)
    replicas.lag = Histogram(
        "coach_replica_feed_lag_seconds",
        "From another replica's send of a batch of feed items to their arrival in this hub.",
        buckets=LAG_BUCKETS,
        registry=metrics.registry,
    )
    loops = [
        asyncio.create_task(_guarded(work, name), name=name)
        for work, name in (
            (replicas.run_sender, "replica-sender"),
            (replicas.run_listener, "replica-listener"),
            (lambda: board.run(local_snapshot), "replica-ops-board"),
        )
    ]
    stack.push_async_callback(_stop, loops)  # runs before the client closes
    log.info("replica %s linked to the others over Redis", replica_id)
    return replicas


async def _guarded(work: Callable[[], Awaitable[None]], name: str) -> None:
    """Run a link loop for good: a bug in one is logged and the loop starts again."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s failed; starting it again", name)
            await asyncio.sleep(1.0)


async def _stop(loops: list[asyncio.Task[None]]) -> None:
    """Cancel the link's loops and wait for them, cancelling again if one is still running
    (a Redis client call caught in its own timeout can take a cancellation for its own)."""
    pending = set(loops)
    for _ in range(5):
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
        if not pending:
            return
    log.warning("replica link loops still running at shutdown: %s", [t.get_name() for t in pending])


def _log_folded_faults(payload: str, count: int, seconds: float) -> None:
    log.warning(
        "redis link still failing: %s more times in the last %.0f s (%s)",
        f"{count:,}",
        seconds,
        payload,
    )
