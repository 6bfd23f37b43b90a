"""The bounded queue of frames waiting to go out to one client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streams.events import ServerEvent

__all__ = ["Outbound"]


class Outbound:
    """Events for one client, numbered, in a bounded queue.

    Overflow policy: a turn that streams faster than the socket drains waits for room (`put`),
    which slows the upstream read instead of buffering; a client that leaves the queue full for
    `send_timeout_s` is dropped (`overflowed` is set) rather than allowed to grow memory.
    Side-channel events (`put_nowait`: assessments, coaching) never wait: a full queue drops
    the client the same way.
    """

    def __init__(
        self,
        maxsize: int,
        send_timeout_s: float = 10.0,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._queue: asyncio.Queue[tuple[int, ServerEvent] | None] = asyncio.Queue(maxsize)
        self._seq = 0
        self._send_timeout_s = send_timeout_s
        self._on_overflow = on_overflow
        self.overflowed = asyncio.Event()

    def _overflow(self) -> None:
        if not self.overflowed.is_set():
            self.overflowed.set()
            if self._on_overflow is not None:
                self._on_overflow()

    async def put(self, event: ServerEvent) -> None:
        if self.overflowed.is_set():
            return
        self._seq += 1
        item = (self._seq, event)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await self._queue.put(item)
            except TimeoutError:
                self._overflow()

    def put_nowait(self, event: ServerEvent) -> None:
        if self.overflowed.is_set():
            return
        self._seq += 1
        try:
            self._queue.put_nowait((self._seq, event))
        except asyncio.QueueFull:
            self._overflow()

    def close(self) -> None:
        """Let the reader finish after what is queued (the end-of-stream marker may be dropped
        when the queue is full; the reader then stops on `overflowed`)."""
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self._overflow()

    async def get(self) -> tuple[int, ServerEvent] | None:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()
