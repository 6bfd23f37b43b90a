"""The leases of the jobs a pipeline runs, kept alive by one heartbeat for all of them.

Leases are short, so that the job of a killed worker is free again within seconds; a job that
runs longer keeps its lease because the pipeline's `LeaseKeeper` renews the leases of every job
it runs, in one statement, every `lease_s / 3`, each fenced by its attempt number. A job's row
that another transaction holds locked at that moment (its own last write, say) is skipped, not
waited for, and renewed at the next beat. A database error in a beat is logged and the next
beat tries again: if the database stays away, the leases run out and another worker may take
the jobs over. When a beat finds that another attempt has taken a job, its work is cancelled:
its writes are fenced off, it could not finish anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from db import jobs as jobs_db
from db.jobs import JobRow
from db.pool import DATABASE_ERRORS, Executor

__all__ = ["LeaseKeeper", "LeaseLost"]

log = logging.getLogger("coach.assess")

T = TypeVar("T")


class LeaseLost(Exception):
    """Another attempt took the job over; this attempt's work was cancelled."""

    def __init__(self, job: JobRow) -> None:
        super().__init__(f"job {job.id}: attempt {job.attempts} lost its lease")
        self.job_id = job.id
        self.attempt = job.attempts


@dataclass(slots=True)
class _Leased:
    job: JobRow
    work: asyncio.Task[Any]
    renewing: bool = True  # False once the job has ended under it: nothing left to renew
    taken: bool = False


class LeaseKeeper:
    """Renews the leases of the jobs running under it; `run` is its heartbeat (a task of the
    pipeline's), `run_leased` runs one job's work under its lease."""

    def __init__(self, db: Executor, lease_s: float) -> None:
        self._db = db
        self._lease_s = lease_s
        self._leased: dict[int, _Leased] = {}

    async def run_leased(self, job: JobRow, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` while its lease is renewed; what it returns or raises, or `LeaseLost`
        when another attempt took the job over meanwhile (the work cancelled)."""
        # The work runs in a task of its own so that the heartbeat can cancel it and its errors
        # reach the caller as they are (a TaskGroup would wrap them in an ExceptionGroup).
        task = asyncio.create_task(work, name=f"assess-job-{job.id}")
        leased = self._leased[job.id] = _Leased(job, task)
        try:
            await asyncio.wait({task})
        finally:
            del self._leased[job.id]
            if not task.done():  # this worker was cancelled (shutdown): the work goes with it
                task.cancel()
                await asyncio.wait({task})
        if leased.taken and task.cancelled():
            raise LeaseLost(job)
        return task.result()

    async def run(self) -> None:
        """Renew every `lease_s / 3`, until cancelled."""
        every = self._lease_s / 3
        while True:
            await asyncio.sleep(every)
            leased = [held for held in self._leased.values() if held.renewing]
            if leased:
                await self._beat(leased, every)

    async def _beat(self, leased: list[_Leased], limit_s: float) -> None:
        claims = [(held.job.id, held.job.attempts) for held in leased]
        try:
            # Bounded, so that a renewal stuck on a lost connection does not stop the next one.
            async with asyncio.timeout(limit_s):
                renewed = await jobs_db.renew_leases(self._db, claims, self._lease_s)
                for held in leased:
                    if held.job.id not in renewed:
                        await self._not_renewed(held)
        except DATABASE_ERRORS as exc:
            log.warning(
                "lease renewal of %d jobs failed (%s); trying again at the next beat",
                len(claims),
                type(exc).__name__,
            )

    async def _not_renewed(self, held: _Leased) -> None:
        """Why `held`'s lease was not renewed: its row was busy (try again at the next beat),
        another attempt took the job (cancel the work), or the job ended under it."""
        now = await jobs_db.get_job(self._db, held.job.id)
        if now is None or now.attempts != held.job.attempts:
            log.warning("assessment job %d: taken over by another attempt", held.job.id)
            held.taken = True
            held.renewing = False
            held.work.cancel()
        elif now.status != "running":
            # Still this attempt's, but no longer running: the work's own last write got there
            # first (cancelling it now would lose what it stored), or the job was given up
            # under it. Its fenced writes settle which; there is no lease left to renew.
            held.renewing = False
