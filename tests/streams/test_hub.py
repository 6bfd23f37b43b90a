"""The live feed hub: numbering, replay, bounded readers, bounded feeds."""

from __future__ import annotations

import asyncio
import gc

import orjson
import pytest

from streams.events import ResponseDelta, encode, encode_json
from streams.hub import Feed, FeedItem, Hub, Subscription


async def _read(sub: Subscription, n: int) -> list[int]:
    seqs = []
    for _ in range(n):
        item = await sub.next(1.0)
        assert item is not None
        seqs.append(item.seq)
    return seqs


async def test_items_are_numbered_and_fanned_out() -> None:
    hub = Hub(replay=8, queue_size=8)
    a = hub.feed("s1", "alice").subscribe()
    b = hub.feed("s1", "alice").subscribe()
    for i in range(3):
        hub.publish("s1", "alice", "response.delta", ResponseDelta("t", str(i)))
    assert await _read(a, 3) == [1, 2, 3]
    assert await _read(b, 3) == [1, 2, 3]
    assert hub.owner("s1") == "alice" and hub.owner("nope") is None
    assert await a.next(0.01) is None  # nothing more: times out


async def test_resume_replays_after_last_id() -> None:
    feed = Feed(replay=4, queue_size=8)
    for i in range(6):
        feed.publish("metrics", {"i": i})
    sub = feed.subscribe(last_seq=3)
    assert await _read(sub, 3) == [4, 5, 6]
    feed.publish("metrics", {"i": 6})
    assert await _read(sub, 1) == [7]
    # Older than the buffer: what is still kept (the last 4), then live.
    old = feed.subscribe(last_seq=0)
    feed.publish("metrics", {"i": 7})
    assert await _read(old, 5) == [4, 5, 6, 7, 8]


async def test_slow_reader_is_dropped_and_publisher_never_waits() -> None:
    feed = Feed(replay=16, queue_size=2)
    slow = feed.subscribe()
    fast = feed.subscribe()
    feed.publish("x", {})
    feed.publish("x", {})
    assert await _read(fast, 2) == [1, 2]
    feed.publish("x", {})  # slow has 2 unread: this overflows it
    assert slow.dropped and slow.ended
    assert await slow.next(0.01) is None
    assert feed.subscribers == 1 and feed.dropped == 1
    for _ in range(100):  # no reader, no growth beyond the replay buffer
        feed.publish("x", {})
    assert fast.dropped


async def test_backlog_does_not_count_against_the_queue() -> None:
    feed = Feed(replay=10, queue_size=2)
    for _ in range(10):
        feed.publish("x", {})
    sub = feed.subscribe(last_seq=0)
    feed.publish("x", {})
    feed.publish("x", {})
    assert not sub.dropped
    assert await _read(sub, 12) == list(range(1, 13))


async def test_waiting_reader_wakes_on_publish_and_on_close() -> None:
    feed = Feed(replay=4, queue_size=4)
    sub = feed.subscribe()
    waiter = asyncio.create_task(sub.next(5.0))
    await asyncio.sleep(0)
    feed.publish("x", {"n": 1})
    item = await asyncio.wait_for(waiter, 1.0)
    assert item is not None and orjson.loads(item.data) == {"type": "x", "n": 1}
    waiter = asyncio.create_task(sub.next(5.0))
    await asyncio.sleep(0)
    feed.close()
    assert await asyncio.wait_for(waiter, 1.0) is None
    assert sub.ended and feed.subscribers == 0


def test_feeds_are_bounded_keeping_those_with_readers() -> None:
    hub = Hub(replay=4, queue_size=4, max_feeds=3)
    kept = hub.feed("s0", "u").subscribe()
    for i in range(1, 10):
        hub.publish(f"s{i}", "u", "x", {})
    assert len(hub) == 3
    assert hub.owner("s0") == "u"  # it has a reader: not forgotten
    assert hub.owner("s9") == "u" and hub.owner("s1") is None
    kept.close()
    assert hub.subscribers == 0


async def test_an_item_is_kept_as_its_json_with_the_type_first() -> None:
    feed = Feed(replay=4, queue_size=4)
    sub = feed.subscribe()
    feed.publish("response.delta", ResponseDelta("t1", "Hi"))
    feed.publish("metrics", {"metrics": {"pitch": 0.5}})
    feed.publish("ops.snapshot", {"type": "ops.snapshot", "turns": 3})
    items: list[FeedItem] = []
    while len(items) < 3:
        item = await sub.next(1.0)
        assert item is not None
        items.append(item)
    assert items[0].data.decode() == encode(ResponseDelta("t1", "Hi"))
    assert orjson.loads(items[0].data) == {"type": "response.delta", "turn_id": "t1", "text": "Hi"}
    assert list(orjson.loads(items[1].data)) == ["type", "metrics"]
    assert orjson.loads(items[2].data) == {"type": "ops.snapshot", "turns": 3}


def test_a_full_replay_buffer_holds_nothing_the_garbage_collector_walks() -> None:
    # One item per streamed token, `replay` of them per session: were they tracked objects,
    # every full collection would walk them all.
    feed = Feed(replay=2000, queue_size=4)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2000):
        feed.publish("response.delta", ResponseDelta("t1", f"word{i} "))
    gc.collect()
    assert len(gc.get_objects()) - before < 100


async def test_an_event_sent_to_its_client_is_fed_as_the_same_bytes() -> None:
    # The writer encodes a token for its client first; the feed, live and on resume, reuses it.
    feed = Feed(replay=4, queue_size=4)
    live = feed.subscribe()
    event = ResponseDelta("t1", "Hi")
    sent = encode_json(event)
    feed.publish(event.type, event)
    item = await live.next(1.0)
    replayed = await feed.subscribe(last_seq=0).next(1.0)
    assert item is not None and replayed is not None
    assert item.data is sent and replayed.data is sent


async def test_a_feed_without_readers_or_replay_encodes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[object] = []
    real_dumps = orjson.dumps

    def dumps(obj: object) -> bytes:
        encoded.append(obj)
        return real_dumps(obj)

    monkeypatch.setattr(orjson, "dumps", dumps)
    feed = Feed(replay=0, queue_size=4)
    feed.publish("response.delta", ResponseDelta("t1", "Hi"))
    feed.publish("metrics", {"metrics": {"pitch": 0.5}})
    assert encoded == [] and feed.last_seq == 2
    # A reader that comes later gets what is published from then on, numbered on.
    sub = feed.subscribe()
    feed.publish("metrics", {"metrics": {"pitch": 0.6}})
    item = await sub.next(1.0)
    assert len(encoded) == 1 and item is not None and item.seq == 3
