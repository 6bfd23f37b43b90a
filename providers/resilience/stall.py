"""Deadlines on waits that repeat many times a second: the next chunk of a stream (or read),
the next send to a client.

`asyncio.timeout()` around every chunk would arm and cancel a timer per chunk, which stood out
in the gateway's profile under load. Here a wait only notes when it began; one
timer per `limit_s` (a `WaitWatch`) checks the wait in progress and either expires it or
re-arms for the rest of the period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["StallDeadline", "WaitWatch"]

T = TypeVar("T")

# Timers may fire a clock tick early (uvloop's clock counts milliseconds).
_TOLERANCE_S = 0.001


class WaitWatch:
    """Calls `on_expire()` when a wait that `begin()` opened is still open `limit_s` later.

    One wait at a time; any number of them may begin and end per period at the cost of two
    attribute writes each. Make it in the running event loop; `close()` when done.
    """

    __slots__ = ("_handle", "_limit_s", "_loop", "_on_expire", "_since")

    def __init__(self, limit_s: float, on_expire: Callable[[], None]) -> None:
        self._limit_s = limit_s
        self._on_expire = on_expire
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        self._since = now = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self._limit_s, self._check)

    def end(self) -> None:
        self._since = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if self._since is None:
            return  # nothing waits now: the next wait arms the timer again
        due = self._since + self._limit_s
        if self._loop.time() >= due - _TOLERANCE_S:
            self._on_expire()
        else:
            self._handle = self._loop.call_at(due, self._check)


class StallDeadline:
    """Bounds each `wait(...)` (of a read, or of `anext(stream)`) to `limit_s` (None:
    unbounded); raises `TimeoutError`, cancelling the waiting task as `asyncio.timeout` does.

    For one stream, read by one task at a time; `close()` (or leave the `with`) when done.
    """

    __slots__ = ("_cancelling", "_expired", "_limit_s", "_task", "_watch")

    def __init__(self, limit_s: float | None) -> None:
        self._limit_s = limit_s
        self._watch: WaitWatch | None = None  # made at the first wait, in the running loop
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    async def wait(self, awaitable: Awaitable[T]) -> T:
        if self._limit_s is None:
            return await awaitable
        if self._watch is None:
            self._watch = WaitWatch(self._limit_s, self._expire)
        # The task that waits now is the one to cancel (a stream may change hands).
        task = self._task = asyncio.current_task()
        assert task is not None, "StallDeadline.wait must run in a task"
        self._cancelling = task.cancelling()
        self._watch.begin()
        try:
            return await awaitable
        except asyncio.CancelledError as exc:
            if self._expired and task.uncancel() <= self._cancelling:
                raise TimeoutError(f"nothing arrived within {self._limit_s}s") from exc
            raise
        finally:
            self._watch.end()

    def __enter__(self) -> StallDeadline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        # The watch calls back into this deadline and the deadline holds the task that waited:
        # let go of both, so that the turn's objects go when their last reference does instead
        # of waiting, as a reference cycle, for a full collection of the garbage collector.
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._task = None

    def _expire(self) -> None:
        if self._task is not None:
            self._expired = True
            self._task.cancel()
