"""How long the in-memory quota stores hold the event loop while they drop expired entries.

    python -m loadtests.micro.quota_sweep [--users 10000]

Fills the stores the way the gateway does without Redis (per user: two daily counters in
`gateway.quota_counters.MemoryCounters` and a place in `gateway.turn_window.MemoryTurnWindow`),
then, beside a task that yields in a loop, runs one counter sweep with every window still open
and one with every window ended, and takes turns for new users once every place has expired.
Prints the longest stretch in which the loop ran nothing else for each. Writes
`loadtests/results/quota_sweep.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

from limits import RateLimitItemPerDay
from limits.aio.strategies import FixedWindowRateLimiter

from gateway.quota_counters import MemoryCounters
from gateway.turn_window import MemoryTurnWindow
from loadtests.bench_output import RESULTS, write_figures

DAY_S = 86400.0


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def longest_stall_ms(work: Awaitable[None]) -> tuple[float, float]:
    """(the whole of `work`, the longest stretch the loop spent away from a yielding task)."""
    task = asyncio.ensure_future(work)
    started = time.perf_counter()
    longest = 0.0

    async def beside() -> None:
        nonlocal longest
        last = started  # work that never yields is one stall from start to end
        while True:
            finished = task.done()
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
            if finished:
                return
            await asyncio.sleep(0)

    await asyncio.gather(task, beside())
    return round((time.perf_counter() - started) * 1000, 2), round(longest * 1000, 2)


async def counters_sweeps(users: int) -> dict[str, float | int]:
    clock = _Clock()
    store = MemoryCounters(clock=clock, sweep_interval_s=DAY_S * 10)
    daily = FixedWindowRateLimiter(store)
    tokens, audio = RateLimitItemPerDay(10**9), RateLimitItemPerDay(10**6)
    for n in range(users):
        await daily.hit(tokens, f"u{n}", cost=100)
        await daily.hit(audio, f"u{n}", cost=3)
    keys = store.size()
    open_ms, open_stall = await longest_stall_ms(store.sweep())  # nothing to drop
    clock.now += DAY_S
    ended_ms, ended_stall = await longest_stall_ms(store.sweep())  # everything to drop
    await store.aclose()
    return {
        "keys": keys,
        "sweep_open_ms": open_ms,
        "sweep_open_longest_loop_stall_ms": open_stall,
        "sweep_ended_ms": ended_ms,
        "sweep_ended_longest_loop_stall_ms": ended_stall,
        "left_after_sweeps": store.size(),
    }


async def turn_window_forgetting(users: int) -> dict[str, float | int]:
    clock = _Clock()
    window = MemoryTurnWindow(clock)
    for n in range(users):
        await window.take(f"u{n}", 30, 60.0)
    clock.now += 61

    async def newcomers() -> None:
        n = 0
        while len(window) > n:  # until only the newcomers are left
            n += 1
            await window.take(f"new{n}", 30, 60.0)
            await asyncio.sleep(0)

    _, stall = await longest_stall_ms(newcomers())
    # Only the newcomers are left, one per take it took to forget everyone else.
    return {"turn_window_longest_loop_stall_ms": stall, "turn_window_takes": len(window)}


async def measure(users: int) -> dict[str, float | int]:
    return {
        "users": users,
        **(await counters_sweeps(users)),
        **(await turn_window_forgetting(users)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "quota_sweep.json")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.users))
    print(
        f"counter sweep over {figures['keys']} keys ({args.users} users), longest stall of the "
        f"loop: {figures['sweep_open_longest_loop_stall_ms']} ms with every window open "
        f"({figures['sweep_open_ms']} ms in all), "
        f"{figures['sweep_ended_longest_loop_stall_ms']} ms with every window ended "
        f"({figures['sweep_ended_ms']} ms in all)\n"
        f"turn window forgetting {args.users} expired users, longest stall of the loop: "
        f"{figures['turn_window_longest_loop_stall_ms']} ms"
    )
    write_figures(args.out, figures)


if __name__ == "__main__":
    main()
