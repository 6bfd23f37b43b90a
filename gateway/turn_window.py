"""The turns-per-minute window: each admitted turn takes a place that lasts a minute, and a turn
that fails gives its place back (DESIGN.md: nothing is charged for a turn that failed).

A place is a member of a per-user set scored by its expiry: in this process's memory, or in a
Redis sorted set (server time, one Lua script per take) so that every gateway process counts
the same turns. `limits`' moving window cannot give a hit back, hence this small one.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

__all__ = ["MemoryTurnWindow", "RedisTurnWindow", "TurnWindow"]


class TurnWindow(Protocol):
    async def take(self, key: str, limit: int, window_s: float) -> tuple[str | None, float]:
        """A place for one turn (its token), or None and the seconds until one frees."""
        ...

    async def give_back(self, key: str, token: str) -> None: ...


class MemoryTurnWindow:
    """Places of this process: per key, token -> expiry, in the order they were taken, which is
    the order they expire in (every place lasts the same window), so a take drops the expired
    ones from the front and the oldest and newest are the first and the last: no take walks a
    key's places. Keys are kept in the order they last took a place, so the keys whose places
    have all expired are at the front, and each take drops up to `forget_batch` of them from
    there: memory follows the users active in the last window, and a take after a quiet spell
    does not stall the loop dropping every user at once.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, forget_batch: int = 100
    ) -> None:
        self._places: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        self._clock = clock
        self._forget_batch = forget_batch

    def __len__(self) -> int:
        """How many keys hold places."""
        return len(self._places)

    async def take(self, key: str, limit: int, window_s: float) -> tuple[str | None, float]:
        now = self._clock()
        self._forget_expired(now)
        places = self._places.get(key)
        if places is None:
            places = self._places[key] = OrderedDict()
        while places and _first(places) <= now:
            places.popitem(last=False)
        if len(places) >= limit:
            return None, _first(places) - now
        token = uuid.uuid4().hex
        places[token] = now + window_s
        self._places.move_to_end(key)
        return token, 0.0

    async def give_back(self, key: str, token: str) -> None:
        places = self._places.get(key)
        if places is not None:
            places.pop(token, None)
            if not places:
                del self._places[key]

    def _forget_expired(self, now: float) -> None:
        for _ in range(self._forget_batch):
            if not self._places:
                return
            key, places = next(iter(self._places.items()))
            if places and _last(places) > now:
                return
            del self._places[key]


def _first(places: OrderedDict[str, float]) -> float:
    return next(iter(places.values()))


def _last(places: OrderedDict[str, float]) -> float:
    return next(reversed(places.values()))


# Returns '' when a place was taken, else the seconds until the oldest place frees.
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) - now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return ''
"""


class RedisTurnWindow:
    """Places shared by every process: one sorted set per user."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._take = client.register_script(_TAKE)

    async def take(self, key: str, limit: int, window_s: float) -> tuple[str | None, float]:
        token = uuid.uuid4().hex
        wait = await self._take(keys=[self._key(key)], args=[token, limit, window_s])
        if isinstance(wait, bytes):
            wait = wait.decode()
        if not wait:
            return token, 0.0
        return None, float(wait)

    async def give_back(self, key: str, token: str) -> None:
        await self._client.zrem(self._key(key), token)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:turns:{key}"
