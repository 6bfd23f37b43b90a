"""The live feed hub: what happens in each session (and at the gateway), fanned out to readers.

A `Feed` numbers what is published to it, keeps the last `replay` items for readers that resume
(`Last-Event-ID`), and hands each item to every `Subscription`. Publishing never blocks and never
waits for a reader. Overflow policy: each subscription holds at most `queue_size` items; a reader
that falls that far behind is dropped (its stream ends; it may resume from the replay buffer).
So memory is bounded by `replay` per feed, `queue_size` per reader and `max_feeds` per hub.

Several replicas (`gateway.replicas`): a hub `link`ed to a `FeedClock` numbers a session's items
with ids unique and ordered across replicas, hands each item it publishes to a `Relay` (the
bounded outbox to Redis), and takes the items other replicas published through `accept`. A
replica's own items never come back to it. Unlinked, a feed counts 1, 2, 3... as it always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from streams.events import ServerEvent, encode_json

__all__ = ["Feed", "FeedClock", "FeedItem", "Hub", "Relay", "Subscription"]

Entry = tuple[int, str, bytes]  # (seq, type, data)
# Where a linked hub hands what it publishes: (session id, owner, entry). Must not block.
Relay = Callable[[str, str, Entry], None]


class FeedItem(NamedTuple):
    """One published item, as its JSON with the `type` first (`data`): for an event, the same
    bytes its client was sent (`encode_json` encodes an event once); SSE framing goes around
    them when read."""

    seq: int
    type: str
    data: bytes


def _json(type: str, payload: ServerEvent | dict[str, Any]) -> bytes:
    if isinstance(payload, dict):
        return orjson.dumps(payload if "type" in payload else {"type": type, **payload})
    return encode_json(payload)


class FeedClock:
    """Item ids for feeds that several replicas write to: unique and ordered per session.

    An id is a counter shifted left by `NODE_BITS`, with this replica's node number in the low
    bits. The counter is one past the highest id the feed has seen (its own and, through
    `Feed.accept`, other replicas'), and at least the wall clock in milliseconds, so a replica
    that takes over a session it never saw still numbers after what readers already have (a
    Lamport clock with a time floor). Two replicas with the same node number could mint one id
    twice if they wrote to one session in the same millisecond: `gateway.replicas` derives the
    node from the replica id and logs a collision it sees. Ids stay below 2**53 (JavaScript
    reads them exactly) until the year 2248.
    """

    NODE_BITS = 10

    def __init__(self, node: int, *, now_ms: Callable[[], int] | None = None) -> None:
        self.node = node % (1 << self.NODE_BITS)
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def next(self, last: int) -> int:
        counter = max((last >> self.NODE_BITS) + 1, self._now_ms())
        return (counter << self.NODE_BITS) | self.node

    def plausible(self, seq: int) -> bool:
        """Whether a client's `Last-Event-ID` could have come from a feed (not minutes ahead)."""
        return 0 <= seq >> self.NODE_BITS <= self._now_ms() + 60_000


class Subscription:
    """One reader of a feed: the replayed backlog first, then live items as they come."""

    def __init__(self, feed: Feed, backlog: list[FeedItem], queue_size: int) -> None:
        self._feed = feed
        self._items: deque[FeedItem] = deque(backlog)
        self._queue_size = queue_size
        self._backlog = len(backlog)  # replayed items still unread: not held against the limit
        self._ready = asyncio.Event()
        self.dropped = False
        self.closed = False
        if backlog:
            self._ready.set()

    @property
    def ended(self) -> bool:
        return self.closed or self.dropped

    def offer(self, item: FeedItem) -> None:
        if self.ended:
            return
        if len(self._items) - self._backlog >= self._queue_size:
            self.dropped = True
            self._feed.unsubscribe(self)
        else:
            self._items.append(item)
        self._ready.set()

    async def next(self, wait_s: float | None = None) -> FeedItem | None:
        """The next item; None when `wait_s` passes first or the subscription `ended`."""
        if not self._items and not self.ended:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
        if self.ended or not self._items:
            return None
        if self._backlog:
            self._backlog -= 1
        return self._items.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._feed.unsubscribe(self)
            self._ready.set()


class Feed:
    """A numbered stream of items with a bounded replay buffer and bounded readers."""

    def __init__(
        self,
        *,
        replay: int,
        queue_size: int,
        owner: str | None = None,
        clock: FeedClock | None = None,
        relay: Callable[[Entry], None] | None = None,
    ) -> None:
        self.owner = owner
        self.queue_size = queue_size
        self._clock = clock
        self._relay = relay
        # (seq, type, data) as plain tuples of atoms, which the garbage collector stops tracking
        # (a named tuple or the event itself it would walk on every full collection, whose
        # pause then grows with every streaming session's replay buffer).
        self._buffer: deque[tuple[int, str, bytes]] = deque(maxlen=max(replay, 0))
        self._subscribers: set[Subscription] = set()
        self._seq = 0
        self.dropped = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def publish(self, type: str, payload: ServerEvent | dict[str, Any]) -> None:
        """Number the item, take its JSON once (not once per reader; an event's is the one its
        client was sent), keep it for replay, offer it to every reader (never blocks).
        `payload` is an event or a JSON-ready dict. With no reader and no replay buffer only the
        number moves: nothing is encoded."""
        self._seq = self._seq + 1 if self._clock is None else self._clock.next(self._seq)
        if not self._subscribers and not self._buffer.maxlen and self._relay is None:
            return
        entry = (self._seq, type, _json(type, payload))
        self._buffer.append(entry)
        if self._relay is not None:
            self._relay(entry)
        self._offer(entry)

    def accept(self, entry: Entry) -> None:
        """An item another replica published: kept in id order, offered to every reader."""
        seq = entry[0]
        self._seq = max(self._seq, seq)
        buffer = self._buffer
        if not buffer or seq > buffer[-1][0]:
            buffer.append(entry)
        elif any(kept[0] == seq for kept in buffer):
            return  # had it already
        else:
            # Two replicas wrote to the session at once: rare; re-sort the bounded buffer. Live
            # readers are past this id already: it is replayed in order, never sent out of order
            # (a gap in a live reader's ids, never a reordering).
            ordered = sorted([*buffer, entry])
            buffer.clear()
            buffer.extend(ordered)
            return
        self._offer(entry)

    def _offer(self, entry: Entry) -> None:
        if self._subscribers:  # most feeds have no reader: this runs per streamed token
            item = FeedItem(*entry)
            for sub in list(self._subscribers):
                sub.offer(item)

    def subscribe(self, last_seq: int | None = None) -> Subscription:
        """A reader of new items; with `last_seq`, first the buffered items after it."""
        backlog = []
        if last_seq is not None:
            backlog = [FeedItem(*entry) for entry in self._buffer if entry[0] > last_seq]
            if self._clock is not None and self._clock.plausible(last_seq):
                # Resumed here from another replica: number on from what the reader has.
                self._seq = max(self._seq, last_seq)
        sub = Subscription(self, backlog, self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            if sub.dropped:
                self.dropped += 1

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        for sub in list(self._subscribers):
            sub.close()


class Hub:
    """Per-session feeds (bounded in number, least recently used forgotten first) and the
    gateway-wide `ops` feed."""

    def __init__(
        self,
        *,
        replay: int = 512,
        queue_size: int = 256,
        max_feeds: int = 512,
        ops_replay: int = 64,
    ) -> None:
        self._clock: FeedClock | None = None
        self._relay: Relay | None = None
        self._replay = replay
        self._queue_size = queue_size
        self._max_feeds = max_feeds
        self._feeds: OrderedDict[str, Feed] = OrderedDict()
        self.ops = Feed(replay=ops_replay, queue_size=queue_size)
        self._dropped_forgotten = 0

    def link(self, clock: FeedClock, relay: Relay) -> None:
        """Share session feeds with other replicas: ids from `clock`, items out to `relay`."""
        self._clock = clock
        self._relay = relay
        for session_id, feed in self._feeds.items():
            feed._clock = clock
            feed._relay = self._relay_for(session_id, feed.owner or "")

    def accept(self, session_id: str, owner: str, entry: Entry) -> None:
        """An item another replica published on a session's feed (created here if need be, so
        that a reader resuming here after that replica died finds it in the replay buffer)."""
        self.feed(session_id, owner).accept(entry)

    def _relay_for(self, session_id: str, owner: str) -> Callable[[Entry], None] | None:
        relay = self._relay
        if relay is None:
            return None
        return lambda entry: relay(session_id, owner, entry)

    def publish(
        self, session_id: str, user_id: str, type: str, payload: ServerEvent | dict[str, Any]
    ) -> None:
        """Publish to a session's feed, creating it (owned by `user_id`) if need be."""
        self.feed(session_id, user_id).publish(type, payload)

    def feed(self, session_id: str, user_id: str) -> Feed:
        feed = self._feeds.get(session_id)
        if feed is None:
            feed = Feed(
                replay=self._replay,
                queue_size=self._queue_size,
                owner=user_id,
                clock=self._clock,
                relay=self._relay_for(session_id, user_id),
            )
            self._feeds[session_id] = feed
            self._forget_old()
        else:
            self._feeds.move_to_end(session_id)
        return feed

    def owner(self, session_id: str) -> str | None:
        """The user a session's feed belongs to, if this hub has seen the session."""
        feed = self._feeds.get(session_id)
        return feed.owner if feed is not None else None

    def _forget_old(self) -> None:
        excess = len(self._feeds) - self._max_feeds
        for session_id in list(self._feeds):
            if excess <= 0:
                return
            if self._feeds[session_id].subscribers == 0:
                self._dropped_forgotten += self._feeds.pop(session_id).dropped
                excess -= 1

    @property
    def subscribers(self) -> int:
        return self.ops.subscribers + sum(f.subscribers for f in self._feeds.values())

    @property
    def dropped(self) -> int:
        """Readers dropped for falling behind, since start."""
        total = self._dropped_forgotten + self.ops.dropped
        return total + sum(f.dropped for f in self._feeds.values())

    def __len__(self) -> int:
        return len(self._feeds)

    def close(self) -> None:
        """End every reader's stream (shutdown)."""
        self.ops.close()
        for feed in self._feeds.values():
            feed.close()
