"""The insight scheduler on real Postgres: a tick runs once across schedulers and processes,
for users active in the window only, bounded per tick, taken over where a dead claimer stopped;
late ticks are skipped; on the whole gateway a scheduled type reaches the user's socket, and a
session closed for idleness is recapped."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from db.pool import Pool
from db.schedule import advance_tick, claim_tick
from db.sessions import open_session
from gateway.quotas import QuotaExceeded
from gateway.scheduler import InsightScheduler, MakeInsight, latest_tick
from gateway.server import running_gateway
from gateway.settings import DEFAULT_INSIGHTS, SchedulerSettings
from tests.conftest import make_settings
from tests.pg import database_dsn, migrated_pool, server_dsn

__all__ = ["database_dsn", "migrated_pool", "server_dsn"]

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 7, 20, 5, tzinfo=UTC)  # five minutes after the nightly tick
NIGHTLY = {"nightly": "0 20 * * *"}


@pytest.fixture
async def pool(migrated_pool: Pool) -> AsyncIterator[Pool]:
    """The module's database with no users, sessions or ticks left by an earlier test."""
    await migrated_pool.execute("TRUNCATE users, scheduled_ticks CASCADE")
    await migrated_pool.execute("DROP TABLE IF EXISTS made")
    yield migrated_pool


async def seed_users(pool: Pool, active: int, *, idle: int = 0) -> list[str]:
    """`active` users with a session now; `idle` more whose last session was 8 days ago."""
    users = [f"u{n:03d}" for n in range(active + idle)]
    for user in users:
        await open_session(pool, user, None, idle_s=600)
    stale = users[active:]
    await pool.execute(
        "UPDATE sessions SET last_active_at = now() - interval '8 days'"
        " WHERE user_id = ANY($1::text[])",
        stale,
    )
    return users[:active]


def recorder(calls: list[str], *, delay_s: float = 0.0) -> MakeInsight:
    async def make(user_id: str, kind: str) -> dict[str, Any]:
        await asyncio.sleep(delay_s)
        calls.append(user_id)
        return {"source": "model"}

    return make


def scheduler(
    pool: Pool, make: MakeInsight, now: datetime = NOW, **settings: Any
) -> InsightScheduler:
    return InsightScheduler(pool, NIGHTLY, SchedulerSettings(**settings), make, clock=lambda: now)


def test_the_latest_tick_is_at_or_before_now() -> None:
    assert latest_tick("0 20 * * *", NOW) == datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    assert latest_tick("0 20 * * *", NOW.replace(hour=20, minute=0)) == NOW.replace(minute=0)
    assert latest_tick("0 20 * * *", NOW.replace(hour=19)) == datetime(
        2026, 12, 6, 20, 0, tzinfo=UTC
    )


async def test_a_tick_runs_once_for_the_active_users_only(pool: Pool) -> None:
    active = await seed_users(pool, 12, idle=3)
    calls: list[str] = []
    first, second = (  # a cap of exactly the active users leaves no one out
        scheduler(pool, recorder(calls, delay_s=0.001), batch=5, max_users_per_tick=12),
        scheduler(pool, recorder(calls, delay_s=0.001), batch=5, max_users_per_tick=12),
    )
    reports = await asyncio.gather(first.run_due(), second.run_due())
    assert sorted(calls) == active  # each active user once; the idle ones never
    ran = [r for rs in reports for r in rs]
    assert len(ran) == 1 and ran[0].finished and ran[0].sources == {"model": 12}
    assert not ran[0].capped
    assert first.stats.ticks + second.stats.ticks == Counter(run=1, held=1)
    # The tick is done: a later poll, here or anywhere, does not run it again.
    assert await first.run_due() == []
    row = await pool.fetchrow("SELECT users_done, finished_at FROM scheduled_ticks")
    assert row is not None and row["users_done"] == 12 and row["finished_at"] is not None


async def test_two_processes_run_a_tick_once(pool: Pool, database_dsn: str) -> None:
    await seed_users(pool, 40)
    await pool.execute("CREATE TABLE made (user_id text NOT NULL, owner text NOT NULL)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.gateway.scheduler_proc",
            database_dsn,
            owner,
            NOW.isoformat(),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for owner in ("alpha", "beta")
    ]
    for proc in procs:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert (await proc.stdout.readline()).strip() == b"ready"
    outs = await asyncio.gather(*(proc.communicate(b"go\n") for proc in procs))
    assert [proc.returncode for proc in procs] == [0, 0]
    results = [orjson.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    made = await pool.fetch("SELECT user_id, count(*) AS n FROM made GROUP BY user_id")
    assert len(made) == 40 and {r["n"] for r in made} == {1}
    ticks = Counter[str]()
    for result in results:
        ticks.update(result["ticks"])
    assert ticks == Counter(run=1, held=1)
    assert [r for result in results for r in result["reports"]] == [{"users": 40, "finished": True}]


async def test_a_dead_claimers_tick_is_taken_over_where_it_stopped(pool: Pool) -> None:
    active = await seed_users(pool, 10)
    tick = latest_tick(NIGHTLY["nightly"], NOW)
    dead = await claim_tick(pool, "nightly", tick, "dead", lease_s=30)
    assert dead is not None
    await advance_tick(pool, dead, active[3], 4, lease_s=30)  # four users done, then it died
    calls: list[str] = []
    survivor = scheduler(pool, recorder(calls))
    assert await survivor.run_due() == []  # its lease still holds
    await pool.execute("UPDATE scheduled_ticks SET lease_until = now() - interval '1 second'")
    [report] = await survivor.run_due()
    assert calls == active[4:] and report.finished


async def test_a_tick_is_bounded_and_late_ticks_are_skipped(pool: Pool) -> None:
    await seed_users(pool, 9)
    calls: list[str] = []
    capped = scheduler(pool, recorder(calls), batch=2, max_users_per_tick=5)
    [report] = await capped.run_due()
    assert len(calls) == 5 and report.capped and report.finished
    assert await capped.run_due() == []  # the others wait for the next tick, not this one
    late = scheduler(pool, recorder(calls), NOW + timedelta(hours=2), late_minutes=60)
    assert await late.run_due() == []
    assert late.stats.ticks == Counter(late=1)


async def test_one_users_failure_does_not_stop_the_tick(pool: Pool) -> None:
    active = await seed_users(pool, 6)

    async def make(user_id: str, kind: str) -> dict[str, Any]:
        if user_id == active[1]:
            raise QuotaExceeded("turns_per_minute", 30.0, 10)
        if user_id == active[2]:
            raise RuntimeError("a bad row")
        return {"source": "fallback"}

    [report] = await scheduler(pool, make).run_due()
    assert (report.sources, report.skipped, report.failed) == ({"fallback": 4}, 1, 1)
    assert report.finished


SHIPPED_SCHEDULED = [name for name, body in DEFAULT_INSIGHTS.items() if body["schedule"]]


async def test_the_gateway_schedules_insights_and_recaps_idle_sessions(
    fast_sim: Any, database_dsn: str, tmp_path: Path, migrated_pool: Pool
) -> None:
    """Every minute is a tick of `minutely`: a gateway that starts runs the current one for the
    user active this week only; the sessions idle for an hour and for 8 days are closed by the
    idle sweep, and each gets a `session_recap`. All through the model (the simulated upstream)."""
    await migrated_pool.execute("TRUNCATE users, scheduled_ticks CASCADE")
    await seed_users(migrated_pool, 1, idle=1)  # u000 active, u001 last seen 8 days ago
    await migrated_pool.execute(
        "UPDATE sessions SET last_active_at = now() - interval '1 hour' WHERE user_id = 'u000'"
    )
    settings = make_settings(
        fast_sim.url,
        tmp_path,
        persistence=True,
        database_url=database_dsn,
        insights={
            "minutely": {"prompt": "Say hi.", "fallback": "Hi.", "schedule": "* * * * *"},
            # The shipped scheduled types off: run within their late window (an hour after
            # 20:00 UTC, say) they would make insights of their own.
            **{name: {"schedule": None} for name in SHIPPED_SCHEDULED},
        },
        scheduler={"poll_s": 0.2},
        assess={"session_idle_minutes": 0.1, "poll_s": 0.2},  # the sweep runs every 1.5 s
    )
    async with running_gateway(settings) as running:
        gateway = running.app.state.gateway

        async def made() -> list[tuple[str, str, str]]:
            rows = await migrated_pool.fetch(
                "SELECT user_id, topic, source FROM skill_results ORDER BY user_id, topic"
            )
            return [(r["user_id"], r["topic"], r["source"]) for r in rows]

        # u001's week-old session is closed and recapped too, but u001 gets no scheduled insight.
        expected = [
            ("u000", "minutely", "model"),
            ("u000", "session_recap", "model"),
            ("u001", "session_recap", "model"),
        ]
        for _ in range(150):  # the database has no event to wait on
            if (seen := await made()) == expected:
                break
            await asyncio.sleep(0.2)
        assert seen == expected
        assert gateway.scheduler is not None
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(running.url + "/metrics")).text
        assert 'coach_scheduler_ticks_total{outcome="run"} 1.0' in metrics
        assert 'coach_scheduled_insights_total{outcome="model"} 1.0' in metrics
