"""The bounded queue of events waiting to go out to one client, and the writer that sends them
over a WebSocket or down a streamed HTTP response."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.send_now import SendNow
from providers.resilience.stall import WaitWatch
from streams.events import ServerEvent, encode_json

__all__ = ["Encode", "Outbound", "SocketWriter", "json_text"]

Encode = Callable[[int, ServerEvent], bytes | None]
"""An event and its number as the bytes to send (None: this event is not sent)."""


def json_text(seq: int, event: ServerEvent) -> bytes:
    """A realtime WebSocket's encoding: the event's JSON (the text frame's UTF-8), the same
    bytes the session's live feed keeps (`encode_json` encodes an event once)."""
    return encode_json(event)


class Outbound:
    """Events for one client, numbered, in a bounded queue read by one task at a time.

    Overflow policy: a turn that streams faster than the socket drains waits for room (`put`),
    which slows the upstream read instead of buffering; a client that leaves the queue full for
    `send_timeout_s` is dropped (`overflowed` is set) rather than allowed to grow memory.
    Side-channel events (`put_nowait`: assessments, coaching) never wait: a full queue drops
    the client the same way.

    Not an `asyncio.Queue`: that makes four deque blocks at once (its items, getters, putters and
    its `join()` event), kept by every connection that sits idle; here the items' deque exists only
    while something is queued (tokens mostly go out without it, `SocketWriter`), and the reader
    and the putters wait on futures.
    """

    def __init__(
        self,
        maxsize: int,
        send_timeout_s: float = 10.0,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._maxsize = maxsize  # <= 0: unbounded
        self._items: deque[tuple[int, ServerEvent] | None] | None = None
        self._reader: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] | None = None
        self._seq = 0
        self._send_timeout_s = send_timeout_s
        self.on_overflow = on_overflow  # called once, when the client is given up on
        self._overflowed = False

    @property
    def send_timeout_s(self) -> float:
        return self._send_timeout_s

    @property
    def overflowed(self) -> bool:
        """The client was given up on; nothing more is queued."""
        return self._overflowed

    def overflow(self) -> None:
        """Give up on this client (as a full queue past the send timeout does): the reader gets
        None from now on."""
        if not self._overflowed:
            self._overflowed = True
            self._wake_reader()
            if self.on_overflow is not None:
                self.on_overflow()

    def number(self) -> int:
        """The next event's number (events sent without the queue are numbered too)."""
        self._seq += 1
        return self._seq

    async def put(self, event: ServerEvent) -> None:
        if self._overflowed:
            return
        item = (self.number(), event)
        if self._full():
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await self._room()
            except TimeoutError:
                self.overflow()
                return
        self._append(item)

    def put_nowait(self, event: ServerEvent) -> None:
        if self._overflowed:
            return
        seq = self.number()
        if self._full():
            self.overflow()
            return
        self._append((seq, event))

    def close(self) -> None:
        """Let the reader finish after what is queued (the end-of-stream marker may be dropped
        when the queue is full; the reader then stops on `overflowed`)."""
        if self._full():
            self.overflow()
            return
        self._append(None)

    async def get(self) -> tuple[int, ServerEvent] | None:
        """The next event and its number; None once closed (after what was queued before) or
        once the client is given up on."""
        assert self._reader is None, "one reader at a time"
        while not self._items and not self._overflowed:
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        items = self._items
        if self._overflowed or not items:
            return None
        item = items.popleft()
        if not items:
            self._items = None
        self._wake_putter()
        return item

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def _full(self) -> bool:
        return 0 < self._maxsize <= self.qsize()

    def _append(self, item: tuple[int, ServerEvent] | None) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._wake_reader()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    async def _room(self) -> None:
        """Wait, first come first served, until the queue has room."""
        while self._full():
            putter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = deque()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                with contextlib.suppress(ValueError):
                    self._putters.remove(putter)  # still there unless it was woken
                if not putter.cancelled():  # woken, then cancelled: pass the room on
                    self._wake_putter()
                raise

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return


class SocketWriter:
    """Sends one client's events in order: `encode` each, then `send` it (a WebSocket's text
    frame, a piece of an SSE body).

    An event is sent at once, from the task that emits it, when nothing is queued or being sent
    (the common case, one token at a time: no hop through the queue and a writer task). With
    `send_now` (the server's synchronous send, `gateway.send_now`) such an event is written
    without an await at all, and only when that cannot go now (the transport paused) does it
    take `send` (`loadtests.micro.writer` measures the three ways; figures in
    loadtests/BENCHMARKS.md). Otherwise it waits its turn in the bounded
    `outbound` queue, which `run` (the writer task) drains. A send that is stuck itself (the
    client stopped reading and the transport paused) is held to `outbound.send_timeout_s` like
    a full queue: past it the client is dropped (`outbound.overflow()`), watched by one timer
    per period (`WaitWatch`) rather than one per send.

    A writer made `held` queues everything until `release` (an HTTP response whose status
    waits on its first event).
    """

    def __init__(
        self,
        outbound: Outbound,
        send: Callable[[bytes], Awaitable[None]],
        send_now: SendNow | None = None,
        encode: Encode = json_text,
        *,
        held: bool = False,
    ) -> None:
        self._outbound = outbound
        self._send = send
        self._send_now = send_now
        self._encode = encode
        self._held = held
        self._in_flight = 0
        self._stuck = WaitWatch(outbound.send_timeout_s, outbound.overflow)

    async def emit(self, event: ServerEvent) -> None:
        """Send `event` after every event emitted before it; waits while the client is slow."""
        outbound = self._outbound
        if self._held or self._in_flight or outbound.qsize() or outbound.overflowed:
            await outbound.put(event)
            return
        data = self._encode(outbound.number(), event)
        if data is None or (self._send_now is not None and self._send_now(data)):
            return
        self._in_flight += 1
        self._stuck.begin()
        try:
            await self._send(data)
        finally:
            self._stuck.end()
            self._in_flight -= 1

    async def release(self, first: tuple[int, ServerEvent]) -> None:
        """Send `first` (taken from the queue while held); from then on events go as above."""
        await self._send_item(first)
        self._held = False

    async def run(self) -> None:
        """Send what was queued, until the queue is closed or the client dropped."""
        while (item := await self._outbound.get()) is not None:
            await self._send_item(item)

    async def _send_item(self, item: tuple[int, ServerEvent]) -> None:
        self._in_flight += 1  # taken from the queue and counted with no await between
        try:
            data = self._encode(*item)
            if data is not None and (self._send_now is None or not self._send_now(data)):
                await self._send(data)
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        self._stuck.close()
