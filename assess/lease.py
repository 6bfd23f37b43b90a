"""A claimed job's lease, kept alive by a heartbeat while the job runs.

Leases are short, so that the job of a killed worker is free again within seconds; a job that
runs longer keeps its lease by renewing it every `lease_s / 3`, fenced by the attempt number.
A database error in a beat is logged and the next beat tries again: if the database stays away,
the lease runs out and another worker may take the job over. When a beat finds that another
attempt has taken the job, the work is cancelled: its writes are fenced off, it could not
finish anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from db import jobs as jobs_db
from db.jobs import JobRow
from db.pool import DATABASE_ERRORS, Executor

__all__ = ["LeaseLost", "run_leased"]

log = logging.getLogger("coach.assess")

T = TypeVar("T")
Beat = Literal["renewed", "unknown", "taken", "ended"]


class LeaseLost(Exception):
    """Another attempt took the job over; this attempt's work was cancelled."""

    def __init__(self, job: JobRow) -> None:
        super().__init__(f"job {job.id}: attempt {job.attempts} lost its lease")
        self.job_id = job.id
        self.attempt = job.attempts


async def run_leased(db: Executor, job: JobRow, lease_s: float, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` while a heartbeat renews `job`'s lease; what it returns or raises, or
    `LeaseLost` when another attempt took the job over meanwhile (the work cancelled)."""
    # The work runs in a task of its own so that the heartbeat can cancel it and its errors
    # reach the caller as they are (a TaskGroup would wrap them in an ExceptionGroup).
    task = asyncio.create_task(work, name=f"assess-job-{job.id}")
    try:
        if await _heartbeat(db, job, lease_s, task):
            task.cancel()
        await asyncio.wait({task})
    finally:
        if not task.done():  # this worker was cancelled (shutdown): the work goes with it
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise LeaseLost(job)
    return task.result()


async def _heartbeat(db: Executor, job: JobRow, lease_s: float, task: asyncio.Task[Any]) -> bool:
    """Renew the lease until `task` is done; True when another attempt took the job first."""
    every = lease_s / 3
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return False
        match await _beat(db, job, lease_s, every):
            case "renewed" | "unknown":
                continue
            case "taken":
                return True
            case "ended":
                return False


async def _beat(db: Executor, job: JobRow, lease_s: float, limit_s: float) -> Beat:
    try:
        # Bounded, so that a renewal stuck on a lost connection does not stop the next one.
        async with asyncio.timeout(limit_s):
            if await jobs_db.renew_lease(db, job.id, job.attempts, lease_s):
                return "renewed"
            now = await jobs_db.get_job(db, job.id)
    except DATABASE_ERRORS as exc:
        log.warning(
            "assessment job %d: lease renewal failed (%s); trying again at the next beat",
            job.id,
            type(exc).__name__,
        )
        return "unknown"
    if now is None or now.attempts != job.attempts:
        return "taken"
    # Still this attempt's, but no longer running: the work's own last write got there first
    # (cancelling it now would lose what it stored), or the job was given up under it. Its
    # fenced writes settle which; there is no lease left to renew.
    return "ended"
