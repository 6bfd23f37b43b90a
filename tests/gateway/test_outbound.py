"""The bounded send queue and the socket writer: order, backpressure, and dropping slow clients."""

from __future__ import annotations

import asyncio
import tracemalloc

import orjson

from gateway.outbound import Outbound, SocketWriter
from streams.events import ResponseDelta, ServerEvent


class Socket:
    """A fake socket: records what was sent; `jam()` makes sends wait until `unjam()`."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, data: bytes) -> None:
        await self.open.wait()
        self.sent.append(orjson.loads(data)["text"])

    def send_now(self, data: bytes) -> bool:
        """As the server's `send_now`: writes at once unless the socket is jammed (paused)."""
        if not self.open.is_set():
            return False
        self.sent.append(orjson.loads(data)["text"] + " (now)")
        return True

    def jam(self) -> None:
        self.open.clear()

    def unjam(self) -> None:
        self.open.set()


def delta(text: str) -> ServerEvent:
    return ResponseDelta("turn_1", text)


async def test_events_keep_their_order_whether_sent_at_once_or_queued() -> None:
    sock, dropped = Socket(), []
    outbound = Outbound(8, send_timeout_s=5, on_overflow=lambda: dropped.append(True))
    writer = SocketWriter(outbound, sock.send)
    running = asyncio.create_task(writer.run())
    await writer.emit(delta("a"))  # nothing ahead of it: sent at once
    assert sock.sent == ["a"]
    sock.jam()
    first = asyncio.create_task(writer.emit(delta("b")))  # sent at once, stuck in the socket
    await asyncio.sleep(0)
    outbound.put_nowait(delta("c"))  # a side-channel event: queued behind b
    third = asyncio.create_task(writer.emit(delta("d")))  # queued behind c
    await asyncio.sleep(0.01)
    assert sock.sent == ["a"] and outbound.qsize() == 1
    sock.unjam()
    await asyncio.gather(first, third)
    outbound.close()
    await running
    writer.close()
    assert sock.sent == ["a", "b", "c", "d"] and not dropped


async def test_a_send_stuck_past_the_timeout_drops_the_client() -> None:
    sock, dropped = Socket(), []
    outbound = Outbound(8, send_timeout_s=0.1, on_overflow=lambda: dropped.append(True))
    writer = SocketWriter(outbound, sock.send)
    sock.jam()
    stuck = asyncio.create_task(writer.emit(delta("a")))
    await asyncio.sleep(0.05)
    assert not dropped  # not yet past the timeout
    await asyncio.sleep(0.15)
    assert dropped == [True] and outbound.overflowed
    stuck.cancel()
    writer.close()


async def test_quick_sends_over_a_longer_time_do_not_drop_the_client() -> None:
    sock, dropped = Socket(), []
    outbound = Outbound(8, send_timeout_s=0.05, on_overflow=lambda: dropped.append(True))
    writer = SocketWriter(outbound, sock.send)
    for i in range(8):  # 8 sends, 20 ms apart: 160 ms in all, none of them stuck
        await writer.emit(delta(str(i)))
        await asyncio.sleep(0.02)
    writer.close()
    assert len(sock.sent) == 8 and not dropped


async def test_with_send_now_events_go_without_waiting_and_queue_behind_a_paused_socket() -> None:
    sock, dropped = Socket(), []
    outbound = Outbound(8, send_timeout_s=5, on_overflow=lambda: dropped.append(True))
    writer = SocketWriter(outbound, sock.send, sock.send_now)
    running = asyncio.create_task(writer.run())
    await writer.emit(delta("a"))  # written now
    sock.jam()  # the transport paused: send_now declines, the ASGI send waits
    waiting = [asyncio.create_task(writer.emit(delta("b")))]
    await asyncio.sleep(0)
    waiting += [asyncio.create_task(writer.emit(delta(text))) for text in "cd"]  # queued
    await asyncio.sleep(0.01)
    # c is with the writer task, waiting on the socket too; d is still queued
    assert sock.sent == ["a (now)"] and outbound.qsize() == 1
    sock.unjam()
    await asyncio.gather(*waiting)
    await asyncio.sleep(0.01)
    await writer.emit(delta("e"))  # nothing ahead of it any more: written now again
    outbound.close()
    await running
    writer.close()
    # the writer task writes d now as well: the socket took sends again
    assert sock.sent == ["a (now)", "b", "c", "d (now)", "e (now)"] and not dropped


async def test_a_full_queue_makes_put_wait_for_room_first_come_first_served() -> None:
    outbound = Outbound(2, send_timeout_s=5)
    await outbound.put(delta("a"))
    await outbound.put(delta("b"))
    waiting = [asyncio.create_task(outbound.put(delta(text))) for text in "cd"]
    await asyncio.sleep(0.01)
    assert outbound.qsize() == 2 and not any(t.done() for t in waiting)
    got = []
    for _ in range(4):
        item = await outbound.get()
        assert item is not None
        got.append(item)
        await asyncio.sleep(0)  # the putter woken by this get appends
    await asyncio.gather(*waiting)
    assert [e for _, e in got] == [delta(text) for text in "abcd"]
    assert [seq for seq, _ in got] == [1, 2, 3, 4] and not outbound.overflowed


async def test_a_put_cancelled_after_it_was_given_room_passes_the_room_on() -> None:
    outbound = Outbound(1, send_timeout_s=5)
    await outbound.put(delta("a"))
    first = asyncio.create_task(outbound.put(delta("b")))
    second = asyncio.create_task(outbound.put(delta("c")))
    await asyncio.sleep(0.01)
    assert await outbound.get() is not None  # room for one: `first` is woken...
    first.cancel()  # ...and cancelled before it could use it
    await asyncio.sleep(0.01)
    assert second.done() and outbound.qsize() == 1
    item = await outbound.get()
    assert item is not None and item[1] == delta("c")


async def test_a_reader_waits_for_items_and_stops_at_close() -> None:
    outbound = Outbound(4)
    reader = asyncio.create_task(outbound.get())
    await asyncio.sleep(0.01)
    assert not reader.done()
    outbound.put_nowait(delta("a"))
    assert (await reader) == (1, delta("a"))
    outbound.close()
    assert await outbound.get() is None
    full = Outbound(1)
    full.put_nowait(delta("a"))
    full.close()  # no room for the end marker: the client is dropped instead
    assert full.overflowed


def test_an_idle_queue_holds_no_buffers() -> None:
    """Thousands of connections sit idle: an `asyncio.Queue` costs 3.2 KiB each, this 0.15."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        queues = [Outbound(1024) for _ in range(1000)]
        per_queue = (tracemalloc.get_traced_memory()[0] - before) / len(queues)
    finally:
        tracemalloc.stop()
    assert per_queue < 512, per_queue


async def test_once_the_client_is_given_up_on_the_reader_gets_none() -> None:
    outbound = Outbound(4, send_timeout_s=5)
    waiting = asyncio.create_task(outbound.get())  # nothing queued: the reader waits
    await asyncio.sleep(0)
    outbound.overflow()  # say, a send stuck past the timeout (`SocketWriter`)
    assert await asyncio.wait_for(waiting, 1) is None
    outbound = Outbound(4, send_timeout_s=5)
    outbound.put_nowait(delta("a"))
    outbound.overflow()
    assert await outbound.get() is None  # what was queued is not sent to a dropped client
