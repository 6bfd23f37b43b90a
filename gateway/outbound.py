"""The bounded queue of frames waiting to go out to one client."""

from __future__ import annotations

import asyncio

from streams.events import ServerEvent

__all__ = ["Outbound"]


class Outbound:
    """Events for one client, numbered, in a bounded queue.

    Overflow policy: a client that does not read fast enough to keep fewer than `maxsize`
    events waiting is dropped (`overflowed` is set) rather than allowed to grow memory.
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[tuple[int, ServerEvent] | None] = asyncio.Queue(maxsize)
        self._seq = 0
        self.overflowed = asyncio.Event()

    def put(self, event: ServerEvent) -> None:
        if self.overflowed.is_set():
            return
        self._seq += 1
        try:
            self._queue.put_nowait((self._seq, event))
        except asyncio.QueueFull:
            self.overflowed.set()

    def close(self) -> None:
        """Let the reader finish after what is queued (the end-of-stream marker may be dropped
        when the queue is full; the reader then stops on `overflowed`)."""
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self.overflowed.set()

    async def get(self) -> tuple[int, ServerEvent] | None:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()
