"""A hub linked to other replicas: ids unique and ordered across replicas, items relayed out,
other replicas' items taken in (readers, replay, slow-reader drop as for local items)."""

from __future__ import annotations

from streams.hub import Entry, FeedClock, Hub, Subscription


class Millis:
    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _linked(node: int, clock: Millis, out: list[tuple[str, str, Entry]]) -> Hub:
    hub = Hub(replay=8, queue_size=4)
    hub.link(
        FeedClock(node, now_ms=clock), lambda sid, owner, entry: out.append((sid, owner, entry))
    )
    return hub


async def _seqs(sub: Subscription) -> list[int]:
    seqs = []
    while (item := await sub.next(0.01)) is not None:
        seqs.append(item.seq)
    return seqs


async def test_items_cross_to_another_replica_in_order_with_one_id_space() -> None:
    millis = Millis()
    out_a: list[tuple[str, str, Entry]] = []
    a, b = _linked(1, millis, out_a), _linked(2, millis, [])
    reader = b.feed("s", "alice").subscribe()
    for text in ("x", "y", "z"):
        a.publish("s", "alice", "response.delta", {"delta": text})
    for sid, owner, entry in out_a:
        b.accept(sid, owner, entry)
    seqs = await _seqs(reader)
    assert seqs == [entry[0] for _, _, entry in out_a] and seqs == sorted(set(seqs))
    assert all(seq & 1023 == 1 for seq in seqs)  # A's node number
    # B takes over the session: its ids follow A's, even in the same millisecond.
    b.publish("s", "alice", "response.completed", {})
    (last,) = await _seqs(reader)
    assert last > seqs[-1] and last & 1023 == 2
    assert [i.seq for i in (b.feed("s", "alice").subscribe(seqs[0]))._items] == [*seqs[1:], last]


async def test_a_replica_that_never_saw_the_session_numbers_after_the_readers() -> None:
    clock = FeedClock(3, now_ms=Millis(5))
    hub = Hub(replay=8, queue_size=4)
    hub.link(clock, lambda *args: None)
    resumed = hub.feed("s", "alice").subscribe(last_seq=99 << 10)  # from another replica
    hub.publish("s", "alice", "response.delta", {"delta": "x"})
    assert (await _seqs(resumed))[0] >> 10 == 100
    absurd = hub.feed("t", "alice").subscribe(last_seq=1 << 62)  # not taken as a floor
    hub.publish("t", "alice", "response.delta", {"delta": "x"})
    assert absurd.ended is False and hub.feed("t", "alice").last_seq >> 10 == 5


async def test_items_from_two_writers_are_replayed_in_id_order() -> None:
    hub = Hub(replay=8, queue_size=8)
    hub.link(FeedClock(1, now_ms=Millis()), lambda *args: None)
    feed = hub.feed("s", "alice")
    for seq in (10 << 10, 12 << 10, 11 << 10):  # the third arrives late
        hub.accept("s", "alice", (seq, "response.delta", b"{}"))
    assert [i.seq for i in feed.subscribe(0)._items] == [10 << 10, 11 << 10, 12 << 10]
    live = feed.subscribe()
    hub.accept("s", "alice", (11 << 10, "response.delta", b"{}"))  # a duplicate: dropped
    assert await _seqs(live) == [] and len(feed.subscribe(0)._items) == 3


async def test_a_late_item_is_replayed_in_order_but_never_sent_live_out_of_order() -> None:
    hub = Hub(replay=8, queue_size=8)
    hub.link(FeedClock(1, now_ms=Millis()), lambda *args: None)
    feed = hub.feed("s", "alice")
    live = feed.subscribe()
    for seq in (10 << 10, 12 << 10, 11 << 10):  # the third arrives after a later one
        hub.accept("s", "alice", (seq, "response.delta", b"{}"))
    assert await _seqs(live) == [10 << 10, 12 << 10]  # ids only ever rise for a live reader
    assert [i.seq for i in feed.subscribe(0)._items] == [10 << 10, 11 << 10, 12 << 10]


async def test_a_slow_reader_of_remote_items_is_dropped() -> None:
    hub = Hub(replay=8, queue_size=2)
    reader = hub.feed("s", "alice").subscribe()
    for seq in range(1, 5):
        hub.accept("s", "alice", (seq, "response.delta", b"{}"))
    assert reader.dropped and hub.dropped == 1


def test_an_unlinked_hub_counts_as_before() -> None:
    hub = Hub(replay=8, queue_size=8)
    for _ in range(3):
        hub.publish("s", "alice", "response.delta", {"delta": "x"})
    assert hub.feed("s", "alice").last_seq == 3
