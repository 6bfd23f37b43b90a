"""The in-process assessment pipeline: a bounded queue of job-id hints, N workers, a poller,
the heartbeat of the running jobs' leases and an idle-session sweeper, all owned by one
TaskGroup.

The table is the truth, the queue only a hint. Overflow policy: when the queue is full a hint is
dropped and the job stays `pending` in the table, where the poller finds it later; the poller
also picks up jobs whose lease ran out (a crashed worker, here or in another process). A running
job's lease is renewed (`assess.lease`), so it can be short: a killed worker's job is taken up
within `lease_s + poll_s`.
Shutdown: stop intake, let the workers drain for `drain_s`, hand unfinished claims back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assess.assessor import Assessor
from assess.lease import LeaseKeeper, LeaseLost
from assess.work import JobOutcome, JobRules, run_job
from db import interactions as turns_db
from db import jobs as jobs_db
from db.interactions import JobTurn
from db.jobs import JobRow
from db.pool import DATABASE_ERRORS, Pool
from db.sessions import ClosedSession, close_idle_sessions

__all__ = ["Notify", "OnClosed", "Pipeline", "PipelineConfig", "PipelineStats", "open_pipeline"]

log = logging.getLogger("coach.assess")

Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]
# Told of the sessions the idle sweep closed here (e.g. to recap them); must not block.
OnClosed = Callable[[Sequence[ClosedSession]], None]
"""`notify(user_id, session_id, assessment)`: push `assessment.created` to the live session."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """`lease_s` is renewed every third of it while a job runs; `lease_s + poll_s` bounds how
    long a killed worker's job waits for another worker."""

    workers: int = 2
    queue_size: int = 256
    lease_s: float = 6.0
    poll_s: float = 2.0
    drain_s: float = 5.0
    session_idle_s: float = 20 * 60.0
    sweep_s: float = 30.0
    rules: JobRules = field(default_factory=JobRules)


@dataclass(slots=True)
class PipelineStats:
    submitted: int = 0
    dropped_hints: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    assessments: int = 0
    released: int = 0


class Pipeline:
    """Assesses finished turns in the background; `submit_nowait` never waits."""

    def __init__(
        self,
        pool: Pool,
        assessor: Assessor,
        config: PipelineConfig,
        *,
        notify: Notify | None = None,
        on_closed: OnClosed | None = None,
    ) -> None:
        self._pool = pool
        self._assessor = assessor
        self._config = config
        self._notify = notify
        self._on_closed = on_closed
        # Bounded: overflow drops the hint only (see module docstring).
        self._queue: asyncio.Queue[int] = asyncio.Queue(maxsize=config.queue_size)
        self._known: set[int] = set()  # queued or running here: the poller skips these
        self._claims: dict[int, int] = {}  # job id -> attempt, claimed and not finished
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task[None] | None = None
        self._leases = LeaseKeeper(pool, config.lease_s)
        self.stats = PipelineStats()

    async def start(self) -> None:
        """Start the workers, the poller and the sweeper."""
        if self._runner is not None:
            raise RuntimeError("pipeline already started")
        self._accepting = True
        self._runner = asyncio.create_task(self._run(), name="assess-pipeline")

    def submit_nowait(self, job_id: int) -> bool:
        """Hint that `job_id` is pending; False if the hint was dropped (closed, or full)."""
        if not self._accepting:
            return False
        self.stats.submitted += 1
        return self._enqueue(job_id)

    def _enqueue(self, job_id: int) -> bool:
        if job_id in self._known:
            return True
        try:
            self._queue.put_nowait(job_id)
        except asyncio.QueueFull:
            self.stats.dropped_hints += 1
            return False
        self._known.add(job_id)
        self._idle.clear()
        return True

    @property
    def idle(self) -> bool:
        """Nothing queued or running in this process."""
        return not self._known

    async def wait_idle(self) -> None:
        """Until nothing is queued or running here (more may still wait in the table)."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop intake, drain for `drain_s`, then cancel; unfinished jobs go back to pending."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._accepting = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.drain_s):
                await self._idle.wait()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await self._release()

    async def _release(self) -> None:
        claims = list(self._claims.items())
        self._claims.clear()
        try:
            self.stats.released += await jobs_db.release_jobs(self._pool, claims)
        except DATABASE_ERRORS:
            log.warning("could not release %d claims; their leases will expire", len(claims))

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for n in range(self._config.workers):
                tg.create_task(self._worker(), name=f"assess-worker-{n}")
            tg.create_task(self._poller(), name="assess-poller")
            tg.create_task(self._leases.run(), name="assess-leases")
            tg.create_task(self._sweeper(), name="assess-sweeper")

    async def _worker(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                await self._handle(job_id)
            finally:
                self._known.discard(job_id)
                if not self._known:
                    self._idle.set()

    async def _handle(self, job_id: int) -> None:
        rules = self._config.rules
        try:
            claimed = await turns_db.claim_job_with_turn(
                self._pool,
                lease_s=self._config.lease_s,
                max_attempts=rules.max_attempts,
                job_id=job_id,
            )
            if claimed is None:  # done already, or another worker holds it
                return
            job, job_turn = claimed
            self._claims[job.id] = job.attempts
            outcome = await self._run_claimed(job, job_turn)
            del self._claims[job.id]
        except DATABASE_ERRORS as exc:
            # The lease runs out and the poller retries the job; the claim stays unreleased.
            self._claims.pop(job_id, None)
            log.warning("assessment job %d: database error %s", job_id, type(exc).__name__)
            return
        except Exception:
            self._claims.pop(job_id, None)
            log.exception("assessment job %d crashed; its lease will expire", job_id)
            return
        await self._finished(outcome)

    async def _run_claimed(self, job: JobRow, job_turn: JobTurn) -> JobOutcome:
        work = run_job(self._pool, self._assessor, job, self._config.rules, job_turn=job_turn)
        try:
            return await self._leases.run_leased(job, work)
        except LeaseLost:
            log.warning("assessment job %d: taken over by another worker, stopped", job.id)
            return JobOutcome(job.id, "lost", None)

    async def _finished(self, outcome: JobOutcome) -> None:
        match outcome.status:
            case "done":
                self.stats.done += 1
            case "failed":
                self.stats.failed += 1
            case "retry":
                self.stats.retried += 1
            case _:
                self.stats.lost += 1
        self.stats.assessments += len(outcome.rows)
        if self._notify is None:
            return
        for row in outcome.rows:
            try:
                await self._notify(row.user_id, row.session_id, row.to_json())
            except Exception:
                log.exception("notify failed for assessment %d", row.id)

    async def _poller(self) -> None:
        while True:
            if self._accepting:
                await self._poll_once()
            await asyncio.sleep(self._config.poll_s)

    async def _poll_once(self) -> None:
        free = self._queue.maxsize - self._queue.qsize()
        max_attempts = self._config.rules.max_attempts
        try:
            await jobs_db.fail_exhausted_jobs(self._pool, max_attempts=max_attempts)
            if free <= 0:
                return
            ids = await jobs_db.claimable_job_ids(
                self._pool, limit=free, max_attempts=max_attempts, exclude=self._known
            )
        except DATABASE_ERRORS as exc:
            log.warning("assessment poll failed: %s", type(exc).__name__)
            return
        for job_id in ids:
            self._enqueue(job_id)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self._config.sweep_s)
            if not self._accepting:
                continue
            try:
                closed = await close_idle_sessions(self._pool, self._config.session_idle_s)
            except DATABASE_ERRORS as exc:
                log.warning("idle-session sweep failed: %s", type(exc).__name__)
                continue
            for session in closed:
                self._enqueue(session.job_id)
            if closed and self._on_closed is not None:
                self._on_closed(closed)


@contextlib.asynccontextmanager
async def open_pipeline(
    pool: Pool, assessor: Assessor, config: PipelineConfig, *, notify: Notify | None = None
) -> AsyncIterator[Pipeline]:
    """A started pipeline, drained and closed on exit."""
    pipeline = Pipeline(pool, assessor, config, notify=notify)
    await pipeline.start()
    try:
        yield pipeline
    finally:
        await pipeline.aclose()
