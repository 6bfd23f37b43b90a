"""What a job costs the database in round trips: a turn that only joins its session's buffer (two
turns in three, in a conversation of short questions) is decided in one read and one short
locked transaction, its job finished and its turn marked in one statement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from assess.assessor import Assessor
from assess.work import JobRules, run_job
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


async def test_a_buffered_turn_costs_six_round_trips(migrated_pool: Pool) -> None:
    sid = await open_session(migrated_pool, "u-trips")
    _, job_id = await add_turn(migrated_pool, "u-trips", sid, "How do I stop saying um?")
    job = await jobs_db.claim_job(migrated_pool, lease_s=30, max_attempts=5, job_id=job_id)
    assert job is not None
    trips: list[str] = []
    counted: Any = _Counted(migrated_pool, trips)
    outcome = await run_job(counted, Assessor(fake_router(FakeAssessProvider())), job, JobRules())
    assert (outcome.status, outcome.scope) == ("done", "buffer")
    state = await migrated_pool.fetchval(
        "SELECT assess_state FROM interactions WHERE id = $1", job.interaction_id
    )
    assert state == "buffered"
    # The job's turn and what it took (1); BEGIN, the session's lock, the buffer's count, the
    # job finished with its turn marked, COMMIT (5).
    assert len(trips) == 6, trips
