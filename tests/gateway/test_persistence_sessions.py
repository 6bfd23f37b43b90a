"""A user's session opened again within seconds is taken from memory: the OpenAI-compatible route
opens it on every request, on the way to the first token, and that was seven round trips each
time. Past `reuse_s`, or once the session is ended here, the next open goes to Postgres."""

from __future__ import annotations

from typing import Any

from db.pool import Pool
from gateway.persistence import DbSessionStore, JobHints
from tests.assess.test_round_trips import _Counted
from tests.pg import database_dsn, migrated_pool, server_dsn

__all__ = ["database_dsn", "migrated_pool", "server_dsn"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(pool: Pool, trips: list[str], clock: Clock) -> DbSessionStore:
    counted: Any = _Counted(pool, trips)
    return DbSessionStore(
        counted, idle_minutes=20, history_turns=20, hints=JobHints(), reuse_s=5, clock=clock
    )


async def test_a_session_opened_again_within_seconds_costs_no_round_trip(
    migrated_pool: Pool,
) -> None:
    trips: list[str] = []
    clock = Clock()
    store = _store(migrated_pool, trips, clock)
    first = await store.open("ivy", None)
    assert trips and not first.resumed
    seen = len(trips)
    clock.now += 4
    again = await store.open("ivy", None)
    assert len(trips) == seen  # no round trip
    assert again.session_id == first.session_id and again.resumed
    clock.now += 2  # 6 s after the database was asked: asked again
    later = await store.open("ivy", None)
    assert len(trips) > seen and later.session_id == first.session_id


async def test_an_ended_session_is_not_taken_again(migrated_pool: Pool) -> None:
    trips: list[str] = []
    clock = Clock()
    store = _store(migrated_pool, trips, clock)
    first = await store.open("jay", None)
    await migrated_pool.execute(
        "UPDATE sessions SET closed_at = now() WHERE id = $1", first.session_id
    )
    store.forget("jay", first.session_id)
    after = await store.open("jay", None)
    assert after.session_id != first.session_id and not after.resumed
