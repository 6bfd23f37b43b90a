"""Per-user quotas: in memory, in Redis, and shared by two separate OS processes over Redis.

Time in memory is a fake clock. Real waits remain only where Redis's own clock is what is
tested: a slot's TTL kept alive by a heartbeat, and a crashed process's slot lapsing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from limits import RateLimitItemPerDay, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.ids import hash_id
from gateway.quota_counters import MemoryCounters
from gateway.quotas import QuotaExceeded, Quotas, QuotaStoreUnavailable
from gateway.settings import QuotaSettings
from gateway.turn_window import MemoryTurnWindow

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REPO = Path(__file__).resolve().parents[2]

DAY_S = 86400.0

LIMITS = QuotaSettings(
    turns_per_minute=3,
    tokens_per_day=100,
    audio_seconds_per_day=10,
    concurrent_streams=2,
    connections=1,
)


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def settle() -> None:
    """Let tasks the last call started run to their end (a sweep that never has to yield)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def redis_reachable() -> bool:
    client: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
        return True
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str | None]:
    """A unique Redis key prefix (keys removed afterwards), or None if Redis is not reachable."""
    if not await redis_reachable():
        yield None
        return
    name = f"coach-test-{uuid.uuid4().hex[:8]}"
    yield name
    client: Redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def prefix(redis_prefix: str | None) -> str:
    if redis_prefix is None:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return redis_prefix


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def quotas(
    request: pytest.FixtureRequest, redis_prefix: str | None, clock: FakeClock
) -> AsyncIterator[Quotas]:
    if request.param == "memory":
        opened = await Quotas.open(LIMITS, None, clock=clock)
    elif redis_prefix is None:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    else:
        opened = await Quotas.open(LIMITS, REDIS_URL, key_prefix=redis_prefix)
    yield opened
    await opened.aclose()


async def test_turns_per_minute(quotas: Quotas) -> None:
    for _ in range(LIMITS.turns_per_minute):
        await quotas.check_turn("alice")
    with pytest.raises(QuotaExceeded) as caught:
        await quotas.check_turn("alice")
    assert caught.value.scope == "turns_per_minute"
    assert 1.0 <= caught.value.retry_after_s <= 60.0
    await quotas.check_turn("bob")  # quotas are per user
    assert quotas.rejections()["turns_per_minute"] == 1


async def test_tokens_per_day_block_turns_without_using_them(quotas: Quotas) -> None:
    await quotas.check_turn("alice")
    await quotas.record_tokens("alice", 60)
    await quotas.check_turn("alice")
    await quotas.record_tokens("alice", 60)  # over: usage is recorded even past the limit
    with pytest.raises(QuotaExceeded) as caught:
        await quotas.check_turn("alice")
    assert caught.value.scope == "tokens_per_day"
    assert 3600 < caught.value.retry_after_s <= 86400
    assert quotas.rejections()["turns_per_minute"] == 0


async def test_audio_seconds_per_day(quotas: Quotas) -> None:
    await quotas.check_audio("alice", 6.0)
    await quotas.record_audio("alice", 6.0)
    await quotas.check_audio("alice", 3.5)
    with pytest.raises(QuotaExceeded) as caught:
        await quotas.check_audio("alice", 4.5)
    assert caught.value.scope == "audio_seconds_per_day"
    assert caught.value.limit == LIMITS.audio_seconds_per_day


async def test_concurrent_streams(quotas: Quotas) -> None:
    async with quotas.stream_slot("alice"), quotas.stream_slot("alice"):
        with pytest.raises(QuotaExceeded) as caught:
            async with quotas.stream_slot("alice"):
                pytest.fail("a third stream was let in")
        assert caught.value.scope == "concurrent_streams"
        async with quotas.stream_slot("bob"):
            pass
    async with quotas.stream_slot("alice"):  # the slots were given back
        pass


async def test_slot_is_released_when_the_body_fails(quotas: Quotas) -> None:
    with pytest.raises(RuntimeError):
        async with quotas.connection_slot("alice"):
            raise RuntimeError("connection dropped")
    async with quotas.connection_slot("alice"):
        pass


async def test_connections(quotas: Quotas) -> None:
    async with quotas.connection_slot("alice"):
        with pytest.raises(QuotaExceeded) as caught:
            async with quotas.connection_slot("alice"):
                pass
    assert caught.value.scope == "connections"
    assert quotas.rejections()["connections"] == 1


async def test_rejection_logs_a_hashed_user(caplog: pytest.LogCaptureFixture) -> None:
    quotas = await Quotas.open(LIMITS, None)
    with caplog.at_level(logging.INFO, logger="coach.quota"):
        async with quotas.connection_slot("alice@example.com"):
            with pytest.raises(QuotaExceeded):
                async with quotas.connection_slot("alice@example.com"):
                    pass
    await quotas.aclose()
    (record,) = [r for r in caplog.records if r.name == "coach.quota"]
    assert record.scope == "connections"  # type: ignore[attr-defined]
    assert record.user == hash_id("alice@example.com")  # type: ignore[attr-defined]
    assert "alice" not in record.getMessage()
    assert len(hash_id("alice@example.com")) == 16


async def test_zero_disables_a_quota() -> None:
    quotas = await Quotas.open(QuotaSettings(turns_per_minute=0, connections=0), None)
    for _ in range(50):
        await quotas.check_turn("alice")
    async with quotas.connection_slot("alice"), quotas.connection_slot("alice"):
        pass
    await quotas.aclose()


async def test_unreachable_redis_fails_at_start() -> None:
    with pytest.raises(QuotaStoreUnavailable, match=r"redis://:\*\*\*@127.0.0.1:1/0"):
        await Quotas.open(LIMITS, "redis://:secret@127.0.0.1:1/0")


SLOT_TTL_S = 1.0  # Redis keeps these times: the heartbeat beats every third of it

WORKER = f"""
import asyncio, json, os, sys
from gateway.quotas import Quotas, QuotaExceeded
from gateway.settings import QuotaSettings
from gateway.turn_window import MemoryTurnWindow

async def main(mode: str) -> None:
    settings = QuotaSettings(turns_per_minute=5, connections=1)
    quotas = await Quotas.open(
        settings, os.environ["REDIS_URL"], key_prefix=os.environ["PREFIX"], slot_ttl_s={SLOT_TTL_S}
    )
    loop = asyncio.get_running_loop()
    if mode == "turns":
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        ok = 0
        for _ in range(4):
            try:
                await quotas.check_turn("shared-user")
                ok += 1
            except QuotaExceeded:
                pass
        print(json.dumps({{"ok": ok, "rejections": quotas.rejections()}}), flush=True)
    elif mode == "hold":
        async with quotas.connection_slot("shared-user"):
            print("held", flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
    elif mode == "try":
        try:
            async with quotas.connection_slot("shared-user"):
                print("ok", flush=True)
        except QuotaExceeded as exc:
            print(exc.scope, flush=True)
    await quotas.aclose()

asyncio.run(main(sys.argv[1]))
"""


async def spawn(mode: str, prefix: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "PREFIX": prefix, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        mode,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()


async def test_turn_limit_holds_across_two_processes(prefix: str) -> None:
    first, second = await spawn("turns", prefix), await spawn("turns", prefix)
    assert [await line(first), await line(second)] == ["ready", "ready"]
    for process in (first, second):  # both start hitting Redis at about the same moment
        assert process.stdin is not None
        process.stdin.write(b"go\n")
    results = [json.loads(await line(first)), json.loads(await line(second))]
    assert sum(r["ok"] for r in results) == 5  # 8 attempts, 5 allowed per minute in total
    assert sum(r["rejections"]["turns_per_minute"] for r in results) == 3
    assert [await first.wait(), await second.wait()] == [0, 0]


async def try_slot(prefix: str) -> str:
    """Try the shared user's only connection slot from this process."""
    quotas = await Quotas.open(QuotaSettings(connections=1), REDIS_URL, key_prefix=prefix)
    try:
        async with quotas.connection_slot("shared-user"):
            return "ok"
    except QuotaExceeded as exc:
        return exc.scope
    finally:
        await quotas.aclose()


async def test_slot_held_in_one_process_is_seen_by_another(prefix: str) -> None:
    holder = await spawn("hold", prefix)
    assert await line(holder) == "held"
    other = await spawn("try", prefix)
    assert await line(other) == "connections"
    await asyncio.sleep(SLOT_TTL_S + 0.5)  # past the slot TTL: only the heartbeat keeps it
    assert await try_slot(prefix) == "connections"
    assert holder.stdin is not None
    holder.stdin.write(b"done\n")
    assert await holder.wait() == 0
    assert await try_slot(prefix) == "ok"
    assert await other.wait() == 0


async def test_slot_of_a_crashed_process_lapses(prefix: str) -> None:
    holder = await spawn("hold", prefix)
    assert await line(holder) == "held"
    holder.kill()  # no release, no more heartbeats
    await holder.wait()
    assert await try_slot(prefix) == "connections"
    await asyncio.sleep(SLOT_TTL_S + 0.2)
    assert await try_slot(prefix) == "ok"


async def test_usage_past_the_limit_still_counts(quotas: Quotas) -> None:
    """Tokens and audio are counted after the fact; a turn that overshoots uses up the day."""
    await quotas.check_turn("over")
    await quotas.record_tokens("over", 60)
    await quotas.record_tokens("over", 60)  # 120 > 100: past the limit, still counted
    with pytest.raises(QuotaExceeded) as info:
        await quotas.check_turn("over")
    assert info.value.scope == "tokens_per_day"
    await quotas.record_audio("over", 8)
    await quotas.record_audio("over", 8)
    with pytest.raises(QuotaExceeded) as audio:
        await quotas.check_audio("over", 0.0)
    assert audio.value.scope == "audio_seconds_per_day"


async def test_a_day_after_its_first_use_the_allowance_is_back(clock: FakeClock) -> None:
    quotas = await Quotas.open(LIMITS, None, clock=clock)
    try:
        await quotas.record_tokens("dora", 100)
        await quotas.record_audio("dora", 10)
        clock.advance(DAY_S - 600)
        with pytest.raises(QuotaExceeded) as tokens:
            await quotas.check_turn("dora")
        assert tokens.value.retry_after_s == 600  # the window began at the first use
        with pytest.raises(QuotaExceeded) as audio:
            await quotas.check_audio("dora", 1)
        assert audio.value.retry_after_s == 600
        clock.advance(600)
        await quotas.check_turn("dora")
        await quotas.check_audio("dora", 10)
    finally:
        await quotas.aclose()


async def test_a_turn_place_frees_a_minute_after_it_was_taken(clock: FakeClock) -> None:
    quotas = await Quotas.open(LIMITS, None, clock=clock)
    try:
        await quotas.check_turn("emil")
        clock.advance(20)
        for _ in range(LIMITS.turns_per_minute - 1):
            await quotas.check_turn("emil")
        with pytest.raises(QuotaExceeded) as caught:
            await quotas.check_turn("emil")
        assert caught.value.retry_after_s == 40  # when the first place frees
        clock.advance(40)
        await quotas.check_turn("emil")
        with pytest.raises(QuotaExceeded):
            await quotas.check_turn("emil")  # the two places taken at 20 s still hold
    finally:
        await quotas.aclose()


@pytest.fixture(params=["ours", "limits-memory", "redis"])
async def daily_store(
    request: pytest.FixtureRequest, redis_prefix: str | None
) -> AsyncIterator[Storage]:
    """Our memory counters, `limits`' own memory storage and the Redis one the gateway uses."""
    if request.param == "ours":
        ours = MemoryCounters()
        yield ours
        await ours.aclose()
    elif request.param == "limits-memory":
        theirs = MemoryStorage()
        yield theirs
        if theirs.timer is not None:
            theirs.timer.cancel()
    elif redis_prefix is None:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    else:
        client: Redis = Redis.from_url(REDIS_URL)
        yield RedisStorage(
            f"async+{REDIS_URL}",
            implementation="redispy",
            key_prefix=f"{redis_prefix}:limits",
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        await client.aclose()


async def test_daily_counters_behave_like_the_stores_of_limits(daily_store: Storage) -> None:
    daily = FixedWindowRateLimiter(daily_store)
    item = RateLimitItemPerDay(100, namespace="coach-tokens")
    fresh = await daily.get_window_stats(item, "nobody")
    assert fresh.remaining == 100 and abs(fresh.reset_time - time.time()) < 5
    assert await daily.test(item, "u", cost=100) and not await daily.test(item, "u", cost=101)
    assert await daily.hit(item, "u", cost=60)
    stats = await daily.get_window_stats(item, "u")
    assert stats.remaining == 40 and DAY_S - 5 < stats.reset_time - time.time() <= DAY_S
    assert not await daily.hit(item, "u", cost=60)  # refused, yet counted
    assert (await daily.get_window_stats(item, "u")).remaining == 0
    assert not await daily.test(item, "u") and await daily.test(item, "v")
    # The window still ends where its first hit put it (Redis reports it to the millisecond).
    assert (await daily.get_window_stats(item, "u")).reset_time == pytest.approx(
        stats.reset_time, abs=0.01
    )
    await daily.clear(item, "u")
    assert await daily.test(item, "u", cost=100)


async def test_memory_counters_ignore_an_ended_window_before_any_sweep(clock: FakeClock) -> None:
    store = MemoryCounters(clock=clock, sweep_interval_s=3600)
    fixed, item = FixedWindowRateLimiter(store), RateLimitItemPerSecond(5)
    try:
        assert await fixed.hit(item, "a", cost=5) and not await fixed.test(item, "a")
        clock.advance(1)
        assert await fixed.test(item, "a", cost=5) and store.size() == 1  # not yet swept
        stats = await fixed.get_window_stats(item, "a")
        assert (stats.remaining, stats.reset_time) == (5, clock.now)
        assert await fixed.hit(item, "a", cost=5)  # a new window from here
        assert (await fixed.get_window_stats(item, "a")).reset_time == clock.now + 1
    finally:
        await store.aclose()


async def test_memory_counters_sweep_at_most_once_per_interval(clock: FakeClock) -> None:
    store = MemoryCounters(clock=clock, sweep_interval_s=10)
    fixed, item = FixedWindowRateLimiter(store), RateLimitItemPerSecond(5)
    try:
        assert await fixed.hit(item, "a")  # the first call sweeps (nothing to drop yet)
        await settle()
        clock.advance(2)  # a's window has ended
        assert await fixed.hit(item, "b")  # within the interval: no sweep
        await settle()
        assert store.size() == 2
        clock.advance(10)  # b's window has ended too, and the interval has passed
        assert await fixed.hit(item, "c")
        await settle()
        assert store.size() == 1 and not await fixed.test(item, "c", cost=5)
    finally:
        await store.aclose()


async def test_memory_counters_sweep_gives_the_loop_back_and_keeps_hits_made_meanwhile(
    clock: FakeClock,
) -> None:
    store = MemoryCounters(clock=clock, sweep_interval_s=3600, sweep_batch=10)
    fixed, item = FixedWindowRateLimiter(store), RateLimitItemPerSecond(5)
    assert await fixed.hit(item, "old0")
    await settle()  # the first call's sweep, over that one key
    for n in range(1, 50):
        assert await fixed.hit(item, f"old{n}")
    clock.advance(2)  # every window has ended
    turns_while_sweeping = 0

    async def meanwhile() -> None:
        nonlocal turns_while_sweeping
        while not sweep.done():
            turns_while_sweeping += 1
            await fixed.hit(item, f"new{turns_while_sweeping}")
            await fixed.hit(item, "old49")  # a key the sweep has yet to reach
            await asyncio.sleep(0)

    sweep = asyncio.create_task(store.sweep())
    await asyncio.gather(sweep, meanwhile())
    await store.aclose()
    # 50 keys in batches of 10: the loop ran between the batches.
    assert turns_while_sweeping == 4
    assert store.size() == turns_while_sweeping + 1  # the new keys and old49, in a new window
    # The hits made on a key while the sweep was elsewhere are all still counted.
    assert (await fixed.get_window_stats(item, "old49")).remaining == 5 - turns_while_sweeping


async def test_the_memory_turn_window_forgets_users_whose_places_expired() -> None:
    clock = FakeClock()
    window = MemoryTurnWindow(clock=clock, forget_batch=100)
    for n in range(1000):
        assert (await window.take(f"user-{n}", 5, 60.0))[0] is not None
    assert len(window) == 1000
    clock.advance(61)  # every place has expired
    token, _ = await window.take("late", 5, 60.0)
    assert token is not None and len(window) == 901  # a hundred forgotten per take
    for _ in range(9):
        await window.give_back("late", (await window.take("late", 5, 60.0))[0] or "")
    assert len(window) == 1
    await window.give_back("late", token)
    assert len(window) == 0


async def test_a_turn_given_back_frees_its_place(quotas: Quotas) -> None:
    tickets = [await quotas.check_turn("gus") for _ in range(LIMITS.turns_per_minute)]
    with pytest.raises(QuotaExceeded):
        await quotas.check_turn("gus")
    await quotas.refund_turn(tickets[0])
    await quotas.check_turn("gus")


async def test_the_memory_turn_window_frees_places_oldest_first() -> None:
    clock = FakeClock()
    window = MemoryTurnWindow(clock=clock)

    async def refused_for() -> float:
        token, wait = await window.take("ann", 3, 60.0)
        assert token is None
        return wait

    taken = []
    for _ in range(3):
        taken.append((await window.take("ann", 3, 60.0))[0])
        clock.advance(10)
    assert await refused_for() == pytest.approx(30.0)  # until the first place frees
    await window.give_back("ann", taken[1] or "")  # a failed turn's place, from the middle
    second, _ = await window.take("ann", 3, 60.0)
    assert second is not None
    assert await refused_for() == pytest.approx(30.0)
    clock.advance(31)  # the first place has expired; the third (taken at 20 s) has not
    assert (await window.take("ann", 3, 60.0))[0] is not None
    assert await refused_for() == pytest.approx(60.0 - 61.0 + 20.0)
