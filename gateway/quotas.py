"""Per-user quotas: turns per minute, tokens and audio seconds per day, concurrent streams and
open connections.

Turns per minute use `gateway.turn_window` (a place per turn for a minute, given back when the
turn fails); tokens and audio use the `limits` library (fixed 24-hour windows from first use).
Counters live in process memory (`gateway.quota_counters`), or in Redis when `redis_url` is set
so that every gateway process shares them. Concurrent slots in Redis are members of a sorted set
scored by an expiry that the holder's process refreshes; a crashed process's slots lapse after
`slot_ttl_s` instead of leaking. A limit of 0 or less disables that quota.

If Redis fails while running, requests are let through (logged): quotas protect the upstreams,
they must not take chat down with them.

Tiers: `[quotas.tiers.NAME]` sets of the limits, chosen by the token's `tier` claim
(`assign_tier`, called on every authentication; a user's latest token decides). A token without
the claim gets the tier `default` (the top-level limits). A tier the configuration does not name
also gets the default limits, with a log line (once per tier per `log_sample_interval_s`): a
token minted ahead of a configuration change must not lock its user out. The counters are per
user and limit (the same in every replica), so a tier is exact across replicas like the rest.

A user's rejections of one scope are logged once per `log_sample_interval_s` with a count
(`gateway.logs.LogSampler`): a client retrying in a loop must not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, RateLimitItemPerDay
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, RateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.ids import hash_id
from gateway.logs import LogSampler
from gateway.quota_counters import MemoryCounters
from gateway.settings import QuotaSettings
from gateway.turn_window import MemoryTurnWindow, RedisTurnWindow, TurnWindow

__all__ = ["QuotaExceeded", "QuotaStoreUnavailable", "Quotas", "Scope", "TurnTicket"]

log = logging.getLogger("coach.quota")

Scope = Literal[
    "turns_per_minute",
    "tokens_per_day",
    "audio_seconds_per_day",
    "concurrent_streams",
    "connections",
]
SCOPES: tuple[Scope, ...] = (
    "turns_per_minute",
    "tokens_per_day",
    "audio_seconds_per_day",
    "concurrent_streams",
    "connections",
)
SLOT_RETRY_AFTER_S = 1.0  # a slot frees when a stream or connection ends: try again soon
DEFAULT_TIER = "default"
MAX_TIERED_USERS = 65_536  # users remembered with a tier other than the default (LRU beyond)
STORE_ERRORS = (RedisError, StorageError, OSError)


class QuotaExceeded(Exception):
    """A user hit a quota; `retry_after_s` is when trying again may succeed."""

    def __init__(self, scope: Scope, retry_after_s: float, limit: int) -> None:
        super().__init__(f"quota {scope} ({limit}) exceeded, retry after {retry_after_s:.0f}s")
        self.scope: Scope = scope
        self.retry_after_s = retry_after_s
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TurnTicket:
    """A turn's place in the user's turns-per-minute window (`Quotas.refund_turn` gives it back
    when the turn fails). `place` is None when no place was taken (quota off, store down)."""

    user_id: str
    place: str | None = None


class QuotaStoreUnavailable(RuntimeError):
    """The configured Redis could not be reached when the quotas were opened."""


class _Slots(Protocol):
    async def acquire(self, key: str, limit: int) -> str | None: ...
    async def release(self, key: str, slot: str) -> None: ...
    async def aclose(self) -> None: ...


class _MemorySlots:
    """Slot counters of this process."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    async def acquire(self, key: str, limit: int) -> str | None:
        if self._held.get(key, 0) >= limit:
            return None
        self._held[key] = self._held.get(key, 0) + 1
        return key

    async def release(self, key: str, slot: str) -> None:
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)

    async def aclose(self) -> None:
        self._held.clear()


# Redis server time, so processes on different hosts agree on expiries.
_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""
)
_REFRESH = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[1])) + 1)
end
return #KEYS
"""
)


class _RedisSlots:
    """Slots shared by every process: one sorted set per user and scope, one member per slot."""

    def __init__(self, client: Redis, prefix: str, ttl_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._acquire = client.register_script(_ACQUIRE)
        self._refresh = client.register_script(_REFRESH)
        self._held: dict[str, str] = {}  # slot -> key
        self._heartbeat = asyncio.create_task(self._beat(), name="quota-slot-heartbeat")

    async def acquire(self, key: str, limit: int) -> str | None:
        slot = uuid.uuid4().hex
        ok = await self._acquire(keys=[self._key(key)], args=[slot, limit, self._ttl_s])
        if not ok:
            return None
        self._held[slot] = key
        return slot

    async def release(self, key: str, slot: str) -> None:
        self._held.pop(slot, None)
        await self._client.zrem(self._key(key), slot)

    async def aclose(self) -> None:
        self._heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._heartbeat

    def _key(self, key: str) -> str:
        return f"{self._prefix}:slots:{key}"

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            held = list(self._held.items())
            if not held:
                continue
            try:
                await self._refresh(
                    keys=[self._key(key) for _, key in held],
                    args=[self._ttl_s, *(slot for slot, _ in held)],
                )
            except STORE_ERRORS:
                log.warning("quota slot heartbeat failed", exc_info=True)


class Quotas:
    """Per-user quotas; open with `Quotas.open`, close with `aclose`."""

    def __init__(
        self,
        settings: QuotaSettings,
        storage: Storage,
        slots: _Slots,
        turns: TurnWindow,
        *,
        client: Redis | None = None,
        log_sample_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tiers = {name: settings.for_tier(name) for name in {DEFAULT_TIER, *settings.tiers}}
        self._user_tiers: OrderedDict[str, str] = OrderedDict()
        self._unknown_tiers: LogSampler[str, str] = LogSampler(
            log_sample_interval_s, _log_folded_unknown_tiers
        )
        self._clock = clock
        self._storage = storage
        self._slots = slots
        self._turns = turns
        self._client = client
        self._daily = FixedWindowRateLimiter(storage)
        self._rejections: dict[str, int] = dict.fromkeys(SCOPES, 0)
        self._rejection_log: LogSampler[tuple[str, Scope], dict[str, object]] = LogSampler(
            log_sample_interval_s, _log_folded_rejections
        )

    @classmethod
    async def open(
        cls,
        settings: QuotaSettings,
        redis_url: str | None,
        *,
        key_prefix: str = "coach",
        slot_ttl_s: float = 60.0,
        log_sample_interval_s: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> Quotas:
        """In memory without `redis_url`; raises `QuotaStoreUnavailable` if Redis is unreachable.

        `clock` stands in for both the wall and the monotonic clock in memory (tests drive time
        with it); Redis keeps time by its own clock.
        """
        sampled = log_sample_interval_s
        if not redis_url:
            wall, steady = (clock, clock) if clock else (time.time, time.monotonic)
            return cls(
                settings,
                MemoryCounters(clock=wall),
                _MemorySlots(),
                MemoryTurnWindow(steady),
                log_sample_interval_s=sampled,
                clock=wall,
            )
        client: Redis = Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=5)
        try:
            await client.ping()
        except STORE_ERRORS as exc:
            await client.aclose()
            raise QuotaStoreUnavailable(
                f"quota store Redis at {_redact(redis_url)} is unreachable: {exc}"
            ) from exc
        storage = RedisStorage(
            _limits_uri(redis_url),
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=f"{key_prefix}:limits",
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        slots = _RedisSlots(client, key_prefix, slot_ttl_s)
        turns = RedisTurnWindow(client, key_prefix)
        return cls(settings, storage, slots, turns, client=client, log_sample_interval_s=sampled)

    def assign_tier(self, user_id: str, tier: str | None) -> None:
        """The tier the user's token names (None: the default); see the module docstring."""
        name = tier or DEFAULT_TIER
        if name not in self._tiers:
            if self._unknown_tiers.admit(name, name):
                log.warning("token tier %r is not configured; default limits apply", name)
            name = DEFAULT_TIER
        if name == DEFAULT_TIER:
            self._user_tiers.pop(user_id, None)
            return
        self._user_tiers[user_id] = name
        self._user_tiers.move_to_end(user_id)
        if len(self._user_tiers) > MAX_TIERED_USERS:
            self._user_tiers.popitem(last=False)

    def limits(self, user_id: str) -> QuotaSettings:
        """The limits of the user's tier."""
        return self._tiers[self._user_tiers.get(user_id, DEFAULT_TIER)]

    async def check_turn(self, user_id: str) -> TurnTicket:
        """Take one turn of the minute's allowance; refuse when today's tokens are spent."""
        user = hash_id(user_id)
        limits = self.limits(user_id)
        tokens = self._item("tokens_per_day", limits)
        if tokens is not None and not await self._test(self._daily, tokens, user, 1):
            await self._reject("tokens_per_day", self._daily, tokens, user, limits)
        limit = limits.turns_per_minute
        if limit <= 0:
            return TurnTicket(user_id)
        try:
            place, retry_after = await self._turns.take(user, limit, 60.0)
        except STORE_ERRORS:
            log.warning("quota store failed; letting the call through", exc_info=True)
            return TurnTicket(user_id)
        if place is None:
            retry_after = max(retry_after, 1.0)
            self._count_rejection("turns_per_minute", user, retry_after)
            raise QuotaExceeded("turns_per_minute", retry_after, limit)
        return TurnTicket(user_id, place)

    async def refund_turn(self, ticket: TurnTicket) -> None:
        """Give a failed turn's place in the window back."""
        if ticket.place is None:
            return
        try:
            await self._turns.give_back(hash_id(ticket.user_id), ticket.place)
        except STORE_ERRORS:
            log.warning("quota store failed; the failed turn stays counted", exc_info=True)

    async def record_tokens(self, user_id: str, tokens: int) -> None:
        item = self._item("tokens_per_day", self.limits(user_id))
        if item is not None and tokens > 0:
            await self._consume(self._daily, item, hash_id(user_id), tokens)

    async def check_audio(self, user_id: str, seconds: float) -> None:
        """Refuse `seconds` more audio if they would pass today's allowance."""
        user = hash_id(user_id)
        limits = self.limits(user_id)
        item = self._item("audio_seconds_per_day", limits)
        cost = max(1, _ms(seconds))  # at least 1 ms: a zero-cost test always passes
        if item is not None and not await self._test(self._daily, item, user, cost):
            await self._reject("audio_seconds_per_day", self._daily, item, user, limits)

    async def record_audio(self, user_id: str, seconds: float) -> None:
        item = self._item("audio_seconds_per_day", self.limits(user_id))
        if item is not None and seconds > 0:
            await self._consume(self._daily, item, hash_id(user_id), _ms(seconds))

    def stream_slot(self, user_id: str) -> AbstractAsyncContextManager[None]:
        """Hold one of the user's concurrent streams; raises `QuotaExceeded` on entry."""
        return self._slot("concurrent_streams", user_id)

    def connection_slot(self, user_id: str) -> AbstractAsyncContextManager[None]:
        """Hold one of the user's open connections; raises `QuotaExceeded` on entry."""
        return self._slot("connections", user_id)

    def rejections(self) -> dict[str, int]:
        """Rejections per scope since start."""
        return dict(self._rejections)

    async def aclose(self) -> None:
        self._rejection_log.close()
        self._unknown_tiers.close()
        await self._slots.aclose()
        if self._client is not None:
            await self._client.aclose()
        if isinstance(self._storage, MemoryCounters):
            await self._storage.aclose()

    @contextlib.asynccontextmanager
    async def _slot(self, scope: Scope, user_id: str) -> AsyncIterator[None]:
        limit = getattr(self.limits(user_id), scope)
        if limit <= 0:
            yield
            return
        user = hash_id(user_id)
        key = f"{scope}:{user}"
        slot: str | None = ""
        try:
            slot = await self._slots.acquire(key, limit)
        except STORE_ERRORS:
            log.warning("quota store failed; letting the call through", exc_info=True)
        if slot is None:
            self._count_rejection(scope, user, SLOT_RETRY_AFTER_S)
            raise QuotaExceeded(scope, SLOT_RETRY_AFTER_S, limit)
        try:
            yield
        finally:
            await self._release(key, slot)

    async def _release(self, key: str, slot: str) -> None:
        if not slot:
            return  # not taken (the store had failed)
        try:
            await self._slots.release(key, slot)
        except STORE_ERRORS:  # the slot lapses by itself after its TTL
            log.warning("quota slot release failed", exc_info=True)

    def _item(
        self, scope: Literal["tokens_per_day", "audio_seconds_per_day"], limits: QuotaSettings
    ) -> RateLimitItem | None:
        if scope == "tokens_per_day":
            limit = limits.tokens_per_day
            return RateLimitItemPerDay(limit, namespace="coach-tokens") if limit > 0 else None
        limit = _ms(limits.audio_seconds_per_day)
        return RateLimitItemPerDay(limit, namespace="coach-audio-ms") if limit > 0 else None

    async def _consume(
        self, limiter: RateLimiter, item: RateLimitItem, user: str, cost: int
    ) -> None:
        """Count usage that already happened. The fixed window adds the cost before comparing,
        so usage past the limit counts too and the next check is refused until the reset."""
        try:
            await limiter.hit(item, user, cost=cost)
        except STORE_ERRORS:
            log.warning("quota store failed; usage not counted", exc_info=True)

    async def _test(self, limiter: RateLimiter, item: RateLimitItem, user: str, cost: int) -> bool:
        try:
            return await limiter.test(item, user, cost=cost)
        except STORE_ERRORS:
            log.warning("quota store failed; letting the call through", exc_info=True)
            return True

    async def _reject(
        self,
        scope: Scope,
        limiter: RateLimiter,
        item: RateLimitItem,
        user: str,
        limits: QuotaSettings,
    ) -> None:
        try:
            stats = await limiter.get_window_stats(item, user)
            retry_after = max(stats.reset_time - self._clock(), 1.0)
        except STORE_ERRORS:
            retry_after = float(item.get_expiry())
        self._count_rejection(scope, user, retry_after)
        limit = limits.audio_seconds_per_day if scope.startswith("audio") else item.amount
        raise QuotaExceeded(scope, retry_after, limit)

    def _count_rejection(self, scope: Scope, user: str, retry_after_s: float) -> None:
        self._rejections[scope] += 1
        extra = {"scope": scope, "user": user, "retry_after_s": round(retry_after_s, 3)}
        if self._rejection_log.admit((user, scope), extra):
            log.info("quota %s exceeded", scope, extra=extra)


def _log_folded_rejections(extra: dict[str, object], count: int, seconds: float) -> None:
    log.info(
        "quota %s exceeded %s more times in the last %.0f s",
        extra["scope"],
        f"{count:,}",
        seconds,
        extra={**extra, "suppressed": count},
    )


def _log_folded_unknown_tiers(tier: str, count: int, seconds: float) -> None:
    log.warning(
        "token tier %r is not configured (%s more tokens in the last %.0f s); default limits",
        tier,
        f"{count:,}",
        seconds,
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _limits_uri(redis_url: str) -> str:
    """`redis://...` -> `async+redis://...` (the scheme `limits` 5 uses for asyncio Redis)."""
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
