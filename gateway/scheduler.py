"""The insight scheduler: each insight type with a `schedule` (five-field cron, UTC) is made for
every user active in the last `active_days`, once per tick across every process.

Every process runs a scheduler; each poll it finds each type's latest tick and tries to claim it
in Postgres (`db.schedule`). The claimer goes through the active users in id order, in batches,
recording the last user done with each batch: a claimer that dies is taken over by another
process where it stopped, once its lease runs out. The work is bounded: at most
`max_users_per_tick` users, at most `concurrency` insights made at once, and a tick first seen
more than `late_minutes` after its time is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from db.pool import DATABASE_ERRORS, Pool
from db.schedule import TickClaim, active_users, advance_tick, claim_tick, finish_tick
from gateway.quotas import QuotaExceeded
from gateway.settings import SchedulerSettings

__all__ = ["InsightScheduler", "MakeInsight", "SchedulerStats", "TickReport", "latest_tick"]

log = logging.getLogger("coach.scheduler")

# Makes (or finds fresh) one insight of a type for a user: `gateway.insight_jobs.make_insight`.
MakeInsight = Callable[[str, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one claimed tick did: insights by source, users skipped (no quota left now) and
    failed; whether it is done (False: the lease was lost to another process, which goes on),
    and whether `max_users_per_tick` left active users out of it."""

    kind: str
    tick: datetime
    sources: dict[str, int]
    skipped: int
    failed: int
    finished: bool
    capped: bool
    seconds: float


@dataclass(slots=True)
class SchedulerStats:
    """Counters for `/metrics`: ticks by outcome (`run`, `held` by another process or done,
    `late`) and insights by source (`model`, `cache`, `fallback`, `skipped`, `failed`)."""

    ticks: Counter[str] = field(default_factory=Counter)
    insights: Counter[str] = field(default_factory=Counter)
    last_tick_seconds: float = 0.0


def latest_tick(schedule: str, now: datetime) -> datetime:
    """The latest time at or before `now` that `schedule` names."""
    tick: datetime = croniter(schedule, now + timedelta(microseconds=1)).get_prev(datetime)
    return tick


class InsightScheduler:
    """Runs the due ticks of the scheduled insight types; `open()` starts its polling task."""

    def __init__(
        self,
        pool: Pool,
        schedules: dict[str, str],
        settings: SchedulerSettings,
        make: MakeInsight,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._schedules = schedules
        self._settings = settings
        self._make = make
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.stats = SchedulerStats()

    async def open(self) -> None:
        if self._task is None and self._schedules:
            self._task = asyncio.create_task(self._poll(), name="insight-scheduler")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_due(self) -> list[TickReport]:
        """Claim and run every type's latest tick that no process has run yet."""
        now = self._clock()
        reports: list[TickReport] = []
        for kind, schedule in self._schedules.items():
            tick = latest_tick(schedule, now)
            if now - tick > timedelta(minutes=self._settings.late_minutes):
                self.stats.ticks["late"] += 1
                continue
            claim = await claim_tick(
                self._pool, kind, tick, self.owner, lease_s=self._settings.lease_s
            )
            if claim is None:
                self.stats.ticks["held"] += 1
                continue
            self.stats.ticks["run"] += 1
            reports.append(await self._run(kind, claim, since=now))
        return reports

    async def _poll(self) -> None:
        while True:
            try:
                for report in await self.run_due():
                    log.info(
                        "scheduled insights made",
                        extra={
                            "insight_type": report.kind,
                            "tick": report.tick.isoformat(),
                            "sources": report.sources,
                            "finished": report.finished,
                            "capped": report.capped,
                        },
                    )
            except DATABASE_ERRORS as exc:  # the lease runs out; a later poll goes on
                log.warning("insight scheduler poll failed: %s", type(exc).__name__)
            await asyncio.sleep(self._settings.poll_s)

    async def _run(self, kind: str, claim: TickClaim, *, since: datetime) -> TickReport:
        started = time.perf_counter()
        outcomes: Counter[str] = Counter()
        active_since = since - timedelta(days=self._settings.active_days)
        current: TickClaim | None = claim
        finished = False
        capped = False
        while current is not None:
            left = self._settings.max_users_per_tick - current.users_done
            users = await active_users(
                self._pool,
                since=active_since,
                after=current.cursor,
                limit=min(self._settings.batch, max(left, 1)),
            )
            if left <= 0 or not users:  # done, or the cap left the rest for the next tick
                capped = bool(users)
                finished = await finish_tick(self._pool, current)
                break
            await self._batch(kind, users, outcomes)
            current = await advance_tick(
                self._pool,
                current,
                users[-1],
                current.users_done + len(users),
                lease_s=self._settings.lease_s,
            )
        seconds = time.perf_counter() - started
        self.stats.last_tick_seconds = seconds
        sources = {k: v for k, v in outcomes.items() if k not in ("skipped", "failed")}
        return TickReport(
            kind,
            claim.tick,
            sources,
            outcomes["skipped"],
            outcomes["failed"],
            finished=finished,
            capped=capped,
            seconds=seconds,
        )

    async def _batch(self, kind: str, users: list[str], outcomes: Counter[str]) -> None:
        gate = asyncio.Semaphore(self._settings.concurrency)

        async def one(user_id: str) -> None:
            async with gate:
                outcome = await self._one(kind, user_id)
            outcomes[outcome] += 1
            self.stats.insights[outcome] += 1

        async with asyncio.TaskGroup() as group:
            for user_id in users:
                group.create_task(one(user_id))

    async def _one(self, kind: str, user_id: str) -> str:
        try:
            insight = await self._make(user_id, kind)
        except QuotaExceeded:  # no model call is due to this user now; the next tick tries
            return "skipped"
        except Exception:  # one user's failure must not stop the tick for everyone else
            log.exception("scheduled insight failed", extra={"insight_type": kind})
            return "failed"
        return str(insight.get("source", "model"))
