"""The live feed hub: what happens in each session (and at the gateway), fanned out to readers.

A `Feed` numbers what is published to it, keeps the last `replay` items for readers that resume
(`Last-Event-ID`), and hands each item to every `Subscription`. Publishing never blocks and never
waits for a reader. Overflow policy: each subscription holds at most `queue_size` items; a reader
that falls that far behind is dropped (its stream ends; it may resume from the replay buffer).
So memory is bounded by `replay` per feed, `queue_size` per reader and `max_feeds` per hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from typing import Any, NamedTuple

import orjson

from streams.events import ServerEvent, encode_json

__all__ = ["Feed", "FeedItem", "Hub", "Subscription"]


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

    def __init__(self, *, replay: int, queue_size: int, owner: str | None = None) -> None:
        self.owner = owner
        self.queue_size = queue_size
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
        self._seq += 1
        if not self._subscribers and not self._buffer.maxlen:
            return
        entry = (self._seq, type, _json(type, payload))
        self._buffer.append(entry)
        if self._subscribers:  # most feeds have no reader: this runs per streamed token
            item = FeedItem(*entry)
            for sub in list(self._subscribers):
                sub.offer(item)

    def subscribe(self, last_seq: int | None = None) -> Subscription:
        """A reader of new items; with `last_seq`, first the buffered items after it."""
        backlog = []
        if last_seq is not None:
            backlog = [FeedItem(*entry) for entry in self._buffer if entry[0] > last_seq]
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
        self._replay = replay
        self._queue_size = queue_size
        self._max_feeds = max_feeds
        self._feeds: OrderedDict[str, Feed] = OrderedDict()
        self.ops = Feed(replay=ops_replay, queue_size=queue_size)
        self._dropped_forgotten = 0

    def publish(
        self, session_id: str, user_id: str, type: str, payload: ServerEvent | dict[str, Any]
    ) -> None:
        """Publish to a session's feed, creating it (owned by `user_id`) if need be."""
        self.feed(session_id, user_id).publish(type, payload)

    def feed(self, session_id: str, user_id: str) -> Feed:
        feed = self._feeds.get(session_id)
        if feed is None:
            feed = Feed(replay=self._replay, queue_size=self._queue_size, owner=user_id)
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
