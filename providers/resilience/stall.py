"""The stall deadline of a stream: no wait for its next chunk (or read) may last longer than
`limit_s`.

`asyncio.timeout()` around every chunk would arm and cancel a timer per chunk, which the profile
showed as a tenth of the gateway's CPU under load. Here a wait only notes when it began; one
timer per `limit_s` checks the wait in progress and either expires it (cancelling the waiting
task, as `asyncio.timeout` does) or re-arms for the rest of the period. The loop is looked up
once per stream (on Python 3.11 each `get_running_loop()` is a `getpid()` system call).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

__all__ = ["StallDeadline"]

T = TypeVar("T")

# Timers may fire a clock tick early (uvloop's clock counts milliseconds).
_TOLERANCE_S = 0.001


class StallDeadline:
    """Bounds each `wait(...)` (or `next(stream)`) to `limit_s` (None: unbounded); raises
    `TimeoutError`.

    For one stream, read by one task at a time; `close()` (or leave the `with`) when done.
    """

    __slots__ = (
        "_cancelling",
        "_expired",
        "_handle",
        "_limit_s",
        "_loop",
        "_task",
        "_waiting_since",
    )

    def __init__(self, limit_s: float | None) -> None:
        self._limit_s = limit_s
        self._waiting_since: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    async def next(self, stream: AsyncIterator[T]) -> T:
        return await self.wait(anext(stream))

    async def wait(self, awaitable: Awaitable[T]) -> T:
        if self._limit_s is None:
            return await awaitable
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        loop = self._loop
        # The task that waits now is the one to cancel (a stream may change hands).
        task = self._task = asyncio.current_task()
        assert task is not None, "StallDeadline.wait must run in a task"
        self._cancelling = task.cancelling()
        self._waiting_since = now = loop.time()
        if self._handle is None:
            self._handle = loop.call_at(now + self._limit_s, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError as exc:
            if self._expired and task.uncancel() <= self._cancelling:
                raise TimeoutError(f"nothing arrived within {self._limit_s}s") from exc
            raise
        finally:
            self._waiting_since = None

    def __enter__(self) -> StallDeadline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        since = self._waiting_since
        if since is None or self._limit_s is None or self._task is None:
            return  # not waiting now: the next wait arms the timer again
        due = since + self._limit_s
        loop = self._loop
        assert loop is not None
        if loop.time() >= due - _TOLERANCE_S:
            self._expired = True
            self._task.cancel()
        else:
            self._handle = loop.call_at(due, self._check)
