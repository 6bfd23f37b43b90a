"""Seeding turns and waiting on jobs, for the pipeline tests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import cast

from db import interactions, sessions
from db.interactions import NewInteraction
from db.pool import Pool
from db.prompt_runs import NewPromptRun

LONG_TEXT = (
    "Here is my practice pitch: our team builds tools that help nurses plan their shifts, and "
    "in the last year we cut overtime by a third across four hospitals, which is why I am asking "
    "you today for a pilot in your ward."
)


async def open_session(pool: Pool, user_id: str) -> str:
    return (await sessions.open_session(pool, user_id, None, idle_s=3600)).session.id


async def add_turn(
    pool: Pool, user_id: str, session_id: str, text: str = LONG_TEXT, *, status: str = "completed"
) -> tuple[int, int]:
    """Record a finished turn; return (interaction id, job id)."""
    request_id = f"req-{uuid.uuid4().hex[:10]}"
    turn = NewInteraction(
        session_id=session_id,
        user_id=user_id,
        turn_id=request_id,
        request_id=request_id,
        channel="ws",
        user_text=text,
        reply_text="Good start. Slow down at the ask." if status == "completed" else "",
        status=status,
        finish_reason="stop",
        total_ms=300.0,
        focus_ids=("pacing", "clarity"),
    )
    run = NewPromptRun(request_id=request_id, purpose="chat", status=status, latency_ms=300.0)
    write = await interactions.record_turn(pool, turn, run, enqueue=True)
    assert write.interaction_id is not None and write.job_id is not None
    return write.interaction_id, write.job_id


async def wait_jobs(pool: Pool, job_ids: list[int], timeout_s: float = 20.0) -> dict[int, str]:
    """Wait until none of `job_ids` is pending or running; return their statuses."""
    async with asyncio.timeout(timeout_s):
        while True:
            rows = await pool.fetch(
                "SELECT id, status FROM assessment_jobs WHERE id = ANY($1::bigint[])", job_ids
            )
            statuses = {int(r["id"]): str(r["status"]) for r in rows}
            if all(s in ("done", "failed") for s in statuses.values()):
                return statuses
            await asyncio.sleep(0.05)


async def job_statuses(pool: Pool, job_ids: list[int]) -> dict[int, str]:
    rows = await pool.fetch(
        "SELECT id, status FROM assessment_jobs WHERE id = ANY($1::bigint[])", job_ids
    )
    return {int(r["id"]): str(r["status"]) for r in rows}


async def lease_of(pool: Pool, job_id: int) -> datetime:
    """The job's `lease_until` (it must be running)."""
    lease: datetime | None = await pool.fetchval(
        "SELECT lease_until FROM assessment_jobs WHERE id = $1", job_id
    )
    assert lease is not None, f"job {job_id} holds no lease"
    return lease


async def wait_renewed(
    pool: Pool, job_id: int, when: datetime, *, attempt: int = 1, timeout_s: float = 15.0
) -> datetime:
    """Wait until `attempt` has renewed the job's lease past `when`; return the lease. Fails as
    soon as another attempt holds the job."""
    async with asyncio.timeout(timeout_s):
        while True:
            row = await pool.fetchrow(
                "SELECT attempts, lease_until FROM assessment_jobs WHERE id = $1", job_id
            )
            assert row["attempts"] == attempt, f"attempt {row['attempts']} holds job {job_id}"
            if row["lease_until"] is not None and row["lease_until"] > when:
                return cast(datetime, row["lease_until"])
            await asyncio.sleep(0.05)


async def wait_db_time(pool: Pool, when: datetime, timeout_s: float = 15.0) -> None:
    """Wait until the database's clock (the one leases are measured by) has passed `when`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await pool.fetchval("SELECT now() > $1", when):
                return
            await asyncio.sleep(0.05)
