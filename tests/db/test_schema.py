"""Migrations, constraints and the turn transaction, on a real Postgres."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from datetime import date

import pytest

from db import focuses, interactions, jobs, sessions
from db.budgets import BudgetStore
from db.interactions import InteractionRow, NewInteraction
from db.migrate import migrate, pending_migrations
from db.pool import DATABASE_ERRORS, Pool, open_pool
from db.prompt_runs import NewPromptRun


def turn(session_id: str, user_id: str, request_id: str, **kw: object) -> NewInteraction:
    fields: dict[str, object] = {
        "session_id": session_id,
        "user_id": user_id,
        "turn_id": request_id,
        "request_id": request_id,
        "channel": "ws",
        "user_text": "How do I slow down when I present?",
        "reply_text": "Pause after each key point and breathe.",
        "status": "completed",
        "finish_reason": "stop",
        "total_ms": 420.0,
    }
    fields.update(kw)
    return NewInteraction(**fields)  # type: ignore[arg-type]


def chat_run(request_id: str) -> NewPromptRun:
    return NewPromptRun(request_id=request_id, purpose="chat", status="completed", latency_ms=1.0)


async def test_migrate_is_idempotent_and_safe_concurrently(database_dsn: str) -> None:
    pools = [await open_pool(database_dsn, max_size=2) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(migrate(p) for p in pools))
        every = [m.name for m in pending_migrations()]
        assert every[:2] == ["init", "skills"]
        assert sorted(len(a) for a in applied) == [0, 0, len(every)]
        assert await migrate(pools[0]) == []
        names = await pools[0].fetch("SELECT name FROM schema_migrations ORDER BY version")
        assert [r["name"] for r in names] == every
    finally:
        for p in pools:
            await p.close()


async def test_the_row_types_name_their_tables_columns(migrated_pool: Pool) -> None:
    """The INSERTs and SELECTs are built from these fields: each must be a column."""

    async def columns(table: str) -> set[str]:
        rows = await migrated_pool.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
        return {r["column_name"] for r in rows}

    assert {f.name for f in fields(InteractionRow)} == await columns("interactions")
    assert {f.name for f in fields(NewPromptRun)} == await columns("prompt_runs") - {
        "id",
        "created_at",
    }


async def test_seeded_focuses(migrated_pool: Pool) -> None:
    ids = {f.id for f in await focuses.list_focuses(migrated_pool)}
    assert {"pacing", "clarity", "filler_words", "pitch_accuracy", "breathing"} <= ids


async def test_at_most_three_active_focuses(migrated_pool: Pool) -> None:
    await focuses.set_active_focuses(migrated_pool, "u-focus", ["pacing", "clarity", "breathing"])
    active = await focuses.active_focuses(migrated_pool, "u-focus")
    assert [f.id for f in active] == ["pacing", "clarity", "breathing"]
    with pytest.raises(ValueError):
        await focuses.set_active_focuses(migrated_pool, "u-focus", ["a", "b", "c", "d"])
    # The schema itself refuses a fourth active position or two focuses in one position.
    with pytest.raises(DATABASE_ERRORS):
        await migrated_pool.execute(
            "INSERT INTO user_focuses (user_id, focus_id, position)"
            " VALUES ('u-focus', 'structure', 4)"
        )
    with pytest.raises(DATABASE_ERRORS):
        await migrated_pool.execute(
            "INSERT INTO user_focuses (user_id, focus_id, position)"
            " VALUES ('u-focus', 'structure', 1)"
        )
    await focuses.set_active_focuses(migrated_pool, "u-focus", ["structure"])
    assert [f.id for f in await focuses.active_focuses(migrated_pool, "u-focus")] == ["structure"]


async def test_turn_transaction_writes_all_three(migrated_pool: Pool) -> None:
    opened = await sessions.open_session(migrated_pool, "u-tx", None, idle_s=600)
    sid = opened.session.id
    write = await interactions.record_turn(
        migrated_pool, turn(sid, "u-tx", "req-ok"), chat_run("req-ok"), enqueue=True
    )
    assert write.interaction_id is not None and write.job_id is not None
    job = await jobs.get_job(migrated_pool, write.job_id)
    assert (
        job is not None and job.status == "pending" and job.interaction_id == write.interaction_id
    )
    runs = await migrated_pool.fetchval(
        "SELECT count(*) FROM prompt_runs WHERE request_id = 'req-ok'"
    )
    assert runs == 1
    # The same request recorded twice writes nothing the second time.
    again = await interactions.record_turn(
        migrated_pool, turn(sid, "u-tx", "req-ok"), chat_run("req-ok"), enqueue=True
    )
    assert again == interactions.TurnWrite(None, None)


async def test_turn_transaction_writes_none_on_failure(migrated_pool: Pool) -> None:
    opened = await sessions.open_session(migrated_pool, "u-tx2", None, idle_s=600)
    sid = opened.session.id
    # The prompt run violates its purpose check after the interaction row went in: all rolls back.
    bad_run = NewPromptRun(request_id="req-bad", purpose="nope", status="x", latency_ms=1.0)  # type: ignore[arg-type]
    with pytest.raises(DATABASE_ERRORS):
        await interactions.record_turn(
            migrated_pool, turn(sid, "u-tx2", "req-bad"), bad_run, enqueue=True
        )
    counts = await migrated_pool.fetchrow(
        "SELECT (SELECT count(*) FROM interactions WHERE request_id = 'req-bad') AS i,"
        " (SELECT count(*) FROM prompt_runs WHERE request_id = 'req-bad') AS p,"
        " (SELECT count(*) FROM assessment_jobs WHERE session_id = $1) AS j",
        sid,
    )
    assert dict(counts) == {"i": 0, "p": 0, "j": 0}


async def test_sessions_resume_and_isolation(migrated_pool: Pool) -> None:
    first = await sessions.open_session(migrated_pool, "u-s", None, idle_s=600)
    assert not first.resumed
    again = await sessions.open_session(migrated_pool, "u-s", None, idle_s=600)
    assert again.resumed and again.session.id == first.session.id
    given = await sessions.open_session(migrated_pool, "u-s", first.session.id, idle_s=600)
    assert given.resumed and given.session.id == first.session.id
    with pytest.raises(LookupError):
        await sessions.open_session(migrated_pool, "u-other", first.session.id, idle_s=600)
    assert await sessions.get_session(migrated_pool, "u-other", first.session.id) is None


async def test_idle_session_is_closed_and_summarised(migrated_pool: Pool) -> None:
    old = await sessions.open_session(migrated_pool, "u-idle", None, idle_s=600)
    await migrated_pool.execute(
        "UPDATE sessions SET last_active_at = now() - interval '1 hour' WHERE id = $1",
        old.session.id,
    )
    new = await sessions.open_session(migrated_pool, "u-idle", None, idle_s=600)
    assert new.session.id != old.session.id and not new.resumed
    assert [(c.session_id, c.user_id) for c in new.closed] == [(old.session.id, "u-idle")]
    closed = await sessions.get_session(migrated_pool, "u-idle", old.session.id)
    assert closed is not None and closed.closed_at is not None
    assert closed.summary_status == "pending"
    # The sweep finds nothing more to close for this user.
    await migrated_pool.execute(
        "UPDATE sessions SET last_active_at = now() - interval '1 hour' WHERE id = $1",
        new.session.id,
    )
    swept = await sessions.close_idle_sessions(migrated_pool, 600)
    job_sessions = await migrated_pool.fetch(
        "SELECT id, session_id FROM assessment_jobs WHERE id = ANY($1::bigint[])",
        [c.job_id for c in swept],
    )
    assert {(r["id"], r["session_id"]) for r in job_sessions} >= {
        (c.job_id, c.session_id) for c in swept
    }
    assert new.session.id in {c.session_id for c in swept}
    assert old.session.id not in {c.session_id for c in swept}


async def test_claim_is_exclusive_and_fenced(migrated_pool: Pool) -> None:
    opened = await sessions.open_session(migrated_pool, "u-claim", None, idle_s=600)
    write = await interactions.record_turn(
        migrated_pool, turn(opened.session.id, "u-claim", "req-claim"), chat_run("r"), enqueue=True
    )
    assert write.job_id is not None
    claims = await asyncio.gather(
        *(
            jobs.claim_job(migrated_pool, lease_s=60, max_attempts=5, job_id=write.job_id)
            for _ in range(5)
        )
    )
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].attempts == 1
    # Expire the lease: a second claimer takes over, and the first can no longer finish.
    await migrated_pool.execute(
        "UPDATE assessment_jobs SET lease_until = now() - interval '1 s' WHERE id = $1",
        write.job_id,
    )
    second = await jobs.claim_job(migrated_pool, lease_s=60, max_attempts=5, job_id=write.job_id)
    assert second is not None and second.attempts == 2
    assert not await jobs.fail_job(migrated_pool, write.job_id, 1, "stale")
    assert await jobs.fail_job(migrated_pool, write.job_id, 2, "current")


async def test_lease_is_renewed_only_by_the_attempt_that_holds_it(migrated_pool: Pool) -> None:
    opened = await sessions.open_session(migrated_pool, "u-renew", None, idle_s=600)
    write = await interactions.record_turn(
        migrated_pool, turn(opened.session.id, "u-renew", "req-renew"), chat_run("r"), enqueue=True
    )
    job_id = write.job_id
    assert job_id is not None
    first = await jobs.claim_job(migrated_pool, lease_s=5, max_attempts=5, job_id=job_id)
    assert first is not None and first.lease_until is not None
    assert job_id in await jobs.renew_leases(migrated_pool, [(job_id, 1)], 60)
    renewed = await jobs.get_job(migrated_pool, job_id)
    assert renewed is not None and renewed.lease_until is not None
    assert (renewed.lease_until - first.lease_until).total_seconds() > 50
    # Attempt 1's lease runs out and attempt 2 takes over: attempt 1 can renew no more.
    await migrated_pool.execute(
        "UPDATE assessment_jobs SET lease_until = now() - interval '1 s' WHERE id = $1", job_id
    )
    second = await jobs.claim_job(migrated_pool, lease_s=5, max_attempts=5, job_id=job_id)
    assert second is not None and second.attempts == 2 and second.lease_until is not None
    assert job_id not in await jobs.renew_leases(migrated_pool, [(job_id, 1)], 60)
    unchanged = await jobs.get_job(migrated_pool, job_id)
    assert unchanged is not None and unchanged.lease_until == second.lease_until
    assert job_id in await jobs.renew_leases(migrated_pool, [(job_id, 2)], 60)
    # A finished job has no lease to renew, not even for the attempt that finished it.
    assert await jobs.complete_job(migrated_pool, job_id, 2, "interaction")
    assert job_id not in await jobs.renew_leases(migrated_pool, [(job_id, 2)], 60)
    done = await jobs.get_job(migrated_pool, job_id)
    assert done is not None and done.status == "done" and done.lease_until is None


async def test_budget_store(migrated_pool: Pool) -> None:
    store = BudgetStore(migrated_pool)
    today = date(2026, 11, 3)
    await store.add(today, "primary:gpt-4o-mini", 0.25)
    await store.add(today, "primary:gpt-4o-mini", 0.5)
    await store.add(today, "backup:haiku", 1.0)
    assert await store.load(today) == {"primary:gpt-4o-mini": 0.75, "backup:haiku": 1.0}
    assert await store.load(date(2026, 11, 4)) == {}
