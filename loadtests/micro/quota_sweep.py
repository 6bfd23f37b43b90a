"""How long the in-memory quota store's sweep of expired entries holds the event loop.

    python -m loadtests.bench_quota_sweep [--users 10000]

Fills the store the way the gateway does without Redis (per user: a moving window of turns and
two daily counters), runs one sweep beside a task that yields in a loop, and prints the whole
sweep's time and the longest stretch in which the loop ran nothing else. Writes
`loadtests/results/quota_sweep.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from gateway.quotas import _MemoryStore
from loadtests.bench_output import RESULTS, write_figures


async def sweep_once(users: int) -> dict[str, float | int]:
    store = _MemoryStore(sweep_interval_s=3600)
    moving, fixed = MovingWindowRateLimiter(store), FixedWindowRateLimiter(store)
    turns, tokens, audio = (
        RateLimitItemPerMinute(30),
        RateLimitItemPerDay(10**9),
        RateLimitItemPerDay(10**6),
    )
    for n in range(users):
        await moving.hit(turns, f"u{n}")
        await fixed.hit(tokens, f"u{n}", cost=100)
        await fixed.hit(audio, f"u{n}", cost=3)
    if store.timer is not None:
        await store.timer  # the first call's sweep
    longest = 0.0
    started = time.perf_counter()
    sweep = asyncio.create_task(store._MemoryStorage__expire_events())

    async def beside() -> None:
        nonlocal longest
        last = started  # a sweep that never yields is one stall from start to end
        while True:
            finished = sweep.done()
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
            if finished:
                return
            await asyncio.sleep(0)

    await asyncio.gather(sweep, beside())
    return {
        "users": users,
        "keys": len(store.events) + len(store.storage),
        "sweep_ms": round((time.perf_counter() - started) * 1000, 2),
        "longest_loop_stall_ms": round(longest * 1000, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "quota_sweep.json")
    args = parser.parse_args(argv)
    figures = asyncio.run(sweep_once(args.users))
    print(
        f"sweep of {figures['keys']} keys ({args.users} users): {figures['sweep_ms']} ms in all, "
        f"longest stall of the loop {figures['longest_loop_stall_ms']} ms"
    )
    write_figures(args.out, figures)


if __name__ == "__main__":
    main()
