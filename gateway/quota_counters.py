"""Fixed-window counters in this process's memory, for `limits`' `FixedWindowRateLimiter`.

Built on `limits.aio.storage.Storage`, the base the library documents for storage backends, so
nothing here depends on how `limits`' own `MemoryStorage` works inside. That one starts a sweep
of expired entries after every call and hops to a thread per key; here a sweep runs at most once
per `sweep_interval_s`, in the loop, and gives the loop back every `sweep_batch` keys: with many
users one pass over every key would stall every stream for as long as it takes. Reads ignore
counters whose window has ended either way: the sweep only returns their memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from limits.aio.storage import Storage

__all__ = ["MemoryCounters"]


class MemoryCounters(Storage):
    """Per key, a count and the time its window ends (set by the window's first hit).

    `clock` reads wall-clock seconds: `limits` reports when a window resets as an epoch time.
    """

    STORAGE_SCHEME = ["coach-memory"]

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        sweep_interval_s: float = 1.0,
        sweep_batch: int = 500,
        **options: float | str | bool,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, window end)
        self._clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._sweep_batch = sweep_batch
        self._next_sweep = 0.0
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return ()  # nothing here fails the way a remote store does

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock()
        self._schedule_sweep(now)
        count, ends = self._live(key, now) or (0, now + expiry)
        self._counters[key] = (count + amount, ends)
        return count + amount

    async def get(self, key: str) -> int:
        live = self._live(key, self._clock())
        return live[0] if live else 0

    async def get_expiry(self, key: str) -> float:
        now = self._clock()
        live = self._live(key, now)
        return live[1] if live else now

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = len(self._counters)
        self._counters.clear()
        return count

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    def size(self) -> int:
        """How many keys are held, those whose window ended included until a sweep drops them."""
        return len(self._counters)

    async def sweep(self) -> None:
        """Drop the counters whose window has ended, giving the loop back every `sweep_batch`.

        Each key is read and dropped without an await in between, so a hit that lands while the
        sweep yields is never lost: the sweep sees that key as it is by then.
        """
        keys = list(self._counters)
        for start in range(0, len(keys), self._sweep_batch):
            if start:
                await asyncio.sleep(0)
            now = self._clock()
            for key in keys[start : start + self._sweep_batch]:
                if self._live(key, now) is None:
                    self._counters.pop(key, None)

    async def aclose(self) -> None:
        """Stop a sweep under way."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._counters.get(key)
        return entry if entry is not None and entry[1] > now else None

    def _schedule_sweep(self, now: float) -> None:
        if now < self._next_sweep or (self._sweeper is not None and not self._sweeper.done()):
            return
        self._next_sweep = now + self._sweep_interval_s
        self._sweeper = asyncio.create_task(self.sweep(), name="quota-counter-sweep")
