"""A scheduler process for the two-process test.

    python -m tests.gateway.scheduler_proc DSN OWNER NOW_ISO

Prints "ready", waits for a line on stdin (a barrier, so that both processes begin together),
runs one `InsightScheduler.run_due()` at the fixed time NOW_ISO for the type `nightly`, whose
"insight" is a row in `made (user_id, owner)`, then prints one JSON line: its tick reports.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Any

import orjson

from db.pool import open_pool
from gateway.scheduler import InsightScheduler
from gateway.settings import SchedulerSettings


async def main(dsn: str, owner: str, now: datetime) -> None:
    pool = await open_pool(dsn, max_size=4)
    try:

        async def make(user_id: str, kind: str) -> dict[str, Any]:
            await pool.execute("INSERT INTO made (user_id, owner) VALUES ($1, $2)", user_id, owner)
            await asyncio.sleep(0.002)  # long enough for the other process to try meanwhile
            return {"source": "model"}

        settings = SchedulerSettings(batch=7, concurrency=3)
        scheduler = InsightScheduler(
            pool, {"nightly": "0 20 * * *"}, settings, make, owner=owner, clock=lambda: now
        )
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        reports = await scheduler.run_due()
        print(
            orjson.dumps(
                {
                    "reports": [
                        {"users": sum(r.sources.values()), "finished": r.finished} for r in reports
                    ],
                    "ticks": dict(scheduler.stats.ticks),
                }
            ).decode(),
            flush=True,
        )
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])))
