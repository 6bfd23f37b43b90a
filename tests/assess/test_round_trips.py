"""What a job costs the database in round trips: a turn that only joins its session's buffer (two
turns in three, in a conversation of short questions) is decided in one read and one short
locked transaction, its job finished and its turn marked in one statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from assess.assessor import Assessor
from assess.work import JobOutcome, JobRules, run_job
from db import interactions as turns_db
from db import jobs as jobs_db
from db.pool import Pool
from tests.assess.fakes import FakeAssessProvider, fake_router
from tests.assess.helpers import add_turn, open_session


class _Counted:
    """A connection or a pool that counts the round trips made through it (a transaction is
    two: its BEGIN and its COMMIT)."""

    def __init__(self, inner: Any, trips: list[str]) -> None:
        self._inner = inner
        self.trips = trips

    async def execute(self, query: str, *args: Any) -> str:
        self.trips.append(query)
        return str(await self._inner.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.trips.append(query)
        return list(await self._inner.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.trips.append(query)
        return await self._inner.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.trips.append(query)
        return await self._inner.fetchval(query, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.trips.append("BEGIN")
        async with self._inner.transaction():
            yield
        self.trips.append("COMMIT")

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Counted]:
        async with self._inner.acquire() as conn:
            yield _Counted(conn, self.trips)


async def _run_counted(pool: Pool, user: str, text: str, attempt_shift: int = 0) -> _Run:
    """A new turn of `text` in a new session of `user`, its job claimed (as attempt
    `attempts + attempt_shift`: another number than the claim's is a lost lease) and run
    through a pool that counts the round trips."""
    sid = await open_session(pool, user)
    _, job_id = await add_turn(pool, user, sid, text)
    job = await jobs_db.claim_job(pool, lease_s=30, max_attempts=5, job_id=job_id)
    assert job is not None
    job = replace(job, attempts=job.attempts + attempt_shift)
    trips: list[str] = []
    counted: Any = _Counted(pool, trips)
    outcome = await run_job(counted, Assessor(fake_router(FakeAssessProvider())), job, JobRules())
    state = await pool.fetchval(
        "SELECT assess_state FROM interactions WHERE id = $1", job.interaction_id
    )
    return _Run(outcome, str(state), trips)


@dataclass(frozen=True)
class _Run:
    outcome: JobOutcome
    state: str  # the turn's assess_state after the job
    trips: list[str]


async def test_a_buffered_turn_costs_four_round_trips(migrated_pool: Pool) -> None:
    run = await _run_counted(migrated_pool, "u-trips", "How do I stop saying um?")
    assert (run.outcome.status, run.outcome.scope, run.state) == ("done", "buffer", "buffered")
    # The job's turn and what it took (1; the pipeline reads it with the claim); BEGIN with the
    # session's lock (1); the buffer counted, the job finished and its turn marked (1); COMMIT.
    assert len(run.trips) == 4, run.trips


async def test_a_turn_the_filter_skips_costs_two_round_trips(migrated_pool: Pool) -> None:
    run = await _run_counted(migrated_pool, "u-trips-skip", "thanks!")
    assert (run.outcome.status, run.outcome.scope, run.state) == ("done", "none", "skipped")
    # The job's turn (1); the job finished with its turn marked (1): the words alone decide,
    # so the session's buffer is neither locked nor counted.
    assert len(run.trips) == 2, run.trips


async def test_a_lost_lease_neither_buffers_the_turn_nor_finishes_the_job(
    migrated_pool: Pool,
) -> None:
    run = await _run_counted(migrated_pool, "u-trips-lost", "How do I stop saying um?", 1)
    assert (run.outcome.status, run.outcome.scope, run.state) == ("lost", "buffer", "pending")
    status = await migrated_pool.fetchval(
        "SELECT status FROM assessment_jobs WHERE user_id = 'u-trips-lost'"
    )
    assert status == "running"  # still the claim's: its attempt finishes or gives it up


async def test_a_job_is_claimed_with_its_turn_in_one_round_trip(migrated_pool: Pool) -> None:
    sid = await open_session(migrated_pool, "u-trips-claim")
    turn_id, job_id = await add_turn(migrated_pool, "u-trips-claim", sid, "How do I stop um?")
    trips: list[str] = []
    counted: Any = _Counted(migrated_pool, trips)
    claimed = await turns_db.claim_job_with_turn(counted, lease_s=30, max_attempts=5, job_id=job_id)
    assert len(trips) == 1
    assert claimed is not None
    job, job_turn = claimed
    assert (job.id, job.status, job.attempts, job.interaction_id) == (job_id, "running", 1, turn_id)
    assert job_turn == await turns_db.job_turn(migrated_pool, job_id, turn_id)
    assert job_turn.turn is not None and job_turn.turn.user_text == "How do I stop um?"
    assert job_turn.taken == []
    # Held now: a second claim gets nothing.
    assert (
        await turns_db.claim_job_with_turn(migrated_pool, lease_s=30, max_attempts=5, job_id=job_id)
        is None
    )


async def test_jobs_of_one_session_deciding_at_once_buffer_one_at_a_time(
    migrated_pool: Pool,
) -> None:
    """Nine short turns of one session, their jobs run all at once: under the session's lock
    each counts what the others left, so they form three groups of three and none is left
    waiting (without the lock, jobs that counted at the same time would all buffer)."""
    sid = await open_session(migrated_pool, "u-trips-race")
    jobs = []
    for n in range(9):
        _, job_id = await add_turn(migrated_pool, "u-trips-race", sid, f"How do I pace part {n}?")
        job = await jobs_db.claim_job(migrated_pool, lease_s=30, max_attempts=5, job_id=job_id)
        assert job is not None
        jobs.append(job)
    assessor = Assessor(fake_router(FakeAssessProvider()))
    outcomes = await asyncio.gather(
        *(run_job(migrated_pool, assessor, job, JobRules()) for job in jobs)
    )
    assert sorted(o.scope or "" for o in outcomes) == ["buffer"] * 6 + ["multi_turn"] * 3
    assert {o.status for o in outcomes} == {"done"}
    states = await migrated_pool.fetch(
        "SELECT assess_state, assess_job_id FROM interactions WHERE session_id = $1", sid
    )
    assert {r["assess_state"] for r in states} == {"assessed"}
    groups: dict[int, int] = {}
    for r in states:
        groups[r["assess_job_id"]] = groups.get(r["assess_job_id"], 0) + 1
    assert sorted(groups.values()) == [3, 3, 3]


async def test_a_failing_block_under_the_buffer_lock_is_rolled_back(migrated_pool: Pool) -> None:
    sid = await open_session(migrated_pool, "u-trips-undo")
    turn_id, _ = await add_turn(migrated_pool, "u-trips-undo", sid, "How do I pace this?")
    with pytest.raises(RuntimeError):
        async with turns_db.buffer_lock(migrated_pool, sid) as conn:
            await conn.execute(
                "UPDATE interactions SET assess_state = 'buffered' WHERE id = $1", turn_id
            )
            raise RuntimeError("the job failed midway")
    state = await migrated_pool.fetchval(
        "SELECT assess_state FROM interactions WHERE id = $1", turn_id
    )
    assert state == "pending"
    async with asyncio.timeout(5), turns_db.buffer_lock(migrated_pool, sid):
        pass  # the lock went with the transaction
