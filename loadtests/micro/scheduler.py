"""What one tick of the insight scheduler costs for N active users.

Two runs on a fresh database of `DATABASE_URL`'s server (else the embedded Postgres) with N
users active today:
- `bookkeeping`: the scheduler alone (claim, batches of active users, lease renewals), making
  nothing: the cost the scheduler adds on top of the insights themselves;
- `insights`: a whole gateway in-process making the scheduled type for every user through the
  simulated upstream (5 ms first token, no pacing): facts query, model call, validation, store.
Prints wall time, CPU time of this process and the per-user figures, and writes
`loadtests/results/scheduler.json` (or `--out`).

    python -m loadtests.micro.scheduler [--users 10000] [--concurrency 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from db.pool import Pool
from gateway.insight_jobs import make_insight
from gateway.scheduler import InsightScheduler
from gateway.settings import InsightSettings, SchedulerSettings
from loadtests.micro.product import product_gateway

RESULTS = Path(__file__).parents[1] / "results"
SECRET = "scheduler-bench-secret-0123456789-abcdefghijklmn"
KIND = "nightly"


async def seed(pool: Pool, users: int) -> None:
    await pool.execute(
        "INSERT INTO users (id) SELECT 'user-' || lpad(n::text, 6, '0')"
        " FROM generate_series(1, $1) AS n",
        users,
    )
    await pool.execute("INSERT INTO sessions (user_id) SELECT id FROM users")


async def timed_tick(
    pool: Pool,
    make: Callable[[str, str], Awaitable[dict[str, Any]]],
    settings: SchedulerSettings,
    users: int,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    scheduler = InsightScheduler(pool, {KIND: "* * * * *"}, settings, make, clock=lambda: now)
    cpu, wall = time.process_time(), time.perf_counter()
    [report] = await scheduler.run_due()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "users": users,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "wall_ms_per_user": round(wall * 1000 / users, 3),
        "cpu_ms_per_user": round(cpu * 1000 / users, 3),
        "sources": report.sources,
        "finished": report.finished,
    }


async def run(users: int, concurrency: int) -> dict[str, Any]:
    tick = SchedulerSettings(concurrency=concurrency, max_users_per_tick=users)
    figures: dict[str, Any] = {"concurrency": concurrency}
    async with product_gateway(
        SECRET,
        insights={KIND: InsightSettings(prompt="Sum up the day.", fallback="Well done.")},
        scheduler=SchedulerSettings(enabled=False),  # the bench runs the ticks itself
    ) as running:
        gateway = running.app.state.gateway
        assert gateway.persistence is not None
        pool = gateway.persistence.pool
        await seed(pool, users)

        async def nothing(user_id: str, kind: str) -> dict[str, Any]:
            return {"source": "none"}

        figures["bookkeeping"] = await timed_tick(pool, nothing, tick, users)
        await pool.execute("TRUNCATE scheduled_ticks")
        made = functools.partial(make_insight, gateway)
        figures["insights"] = await timed_tick(pool, made, tick, users)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "scheduler.json")
    args = parser.parse_args()
    figures = asyncio.run(run(args.users, args.concurrency))
    for name in ("bookkeeping", "insights"):
        f = figures[name]
        print(
            f"{name:12} {f['users']} users: {f['wall_s']} s wall ({f['wall_ms_per_user']} ms/user),"
            f" {f['cpu_s']} s CPU ({f['cpu_ms_per_user']} ms/user), {f['sources']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
