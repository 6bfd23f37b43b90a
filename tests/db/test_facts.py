"""The facts of a user's practice and the stored skill answers, on a real Postgres with seeded
data: sessions and minutes in 7 days, streak days, top error keys, focus levels, and the cache
lookups of `skill_results` (keyed by the user)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from assess.facts import streak_days, user_facts
from db.focuses import set_active_focuses
from db.pool import Pool
from db.skills import NewSkillResult, fresh_result, latest_results, store_result


async def seed_user(pool: Pool, user_id: str) -> None:
    await pool.execute("INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id)


async def seed_session(pool: Pool, user_id: str, opened_ago: str, active_ago: str) -> str:
    """A session opened and last active the given intervals ago (`'2 days'`)."""
    await seed_user(pool, user_id)
    sid: str = await pool.fetchval(
        "INSERT INTO sessions (user_id, opened_at, last_active_at)"
        " VALUES ($1, now() - $2::text::interval, now() - $3::text::interval) RETURNING id",
        user_id,
        opened_ago,
        active_ago,
    )
    return sid


async def seed_turn(pool: Pool, user_id: str, session_id: str, ago: str) -> None:
    request_id = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO interactions (session_id, user_id, turn_id, request_id, channel, user_text,"
        " reply_text, status, total_ms, created_at) VALUES ($1, $2, $3, $3, 'ws', 'hi', 'ok',"
        " 'completed', 100, now() - $4::text::interval)",
        session_id,
        user_id,
        request_id,
        ago,
    )


async def seed_assessment(
    pool: Pool,
    user_id: str,
    session_id: str,
    *,
    focus: str = "pacing",
    score: int | None = None,
    errors: list[dict[str, Any]] | None = None,
    ago: str = "1 hour",
) -> None:
    job_id = await pool.fetchval(
        "INSERT INTO assessment_jobs (kind, user_id, session_id, status)"
        " VALUES ('session_summary', $1, $2, 'done') RETURNING id",
        user_id,
        session_id,
    )
    await pool.execute(
        "INSERT INTO assessments (job_id, user_id, session_id, focus_id, kind, category, score,"
        " errors, rubric_version, created_at) VALUES ($1, $2, $3, $4, 'session_summary', $5, $6,"
        " $7, 'r1', now() - $8::text::interval)",
        job_id,
        user_id,
        session_id,
        focus,
        "progress" if score is not None else "error",
        score,
        errors or [],
        ago,
    )


def error(key: str) -> dict[str, str]:
    return {"key": key, "message": f"{key} seen", "severity": "medium"}


async def test_facts_from_seeded_data(migrated_pool: Pool) -> None:
    pool, user = migrated_pool, "facts-ann"
    recent = await seed_session(pool, user, "2 days", "47 hours 30 minutes")
    today = await seed_session(pool, user, "1 hour", "40 minutes")
    old = await seed_session(pool, user, "10 days", "10 days")
    for ago in ("10 minutes", "1 day", "2 days"):
        await seed_turn(pool, user, today if ago == "10 minutes" else recent, ago)
    await seed_turn(pool, user, old, "4 days")  # a gap: the streak stops at 3 days
    await seed_assessment(pool, user, today, errors=[error("rushed_close"), error("filler_um")])
    await seed_assessment(pool, user, recent, errors=[error("rushed_close")])
    await seed_assessment(pool, user, old, errors=[error("stale_key")], ago="40 days")
    for score in (5, 5):
        await seed_assessment(pool, user, today, focus="pacing", score=score)
    await set_active_focuses(pool, user, ["clarity"])
    # Another user's data counts for nothing here.
    other = await seed_session(pool, "facts-bob", "1 hour", "1 hour")
    await seed_assessment(pool, "facts-bob", other, errors=[error("bob_only")] * 3)

    facts = await user_facts(pool, user)

    assert facts.sessions_7d == 2
    assert facts.minutes_7d == pytest.approx(50, abs=0.01)
    assert facts.streak_days == 3
    assert [(e.key, e.count) for e in facts.top_errors] == [("rushed_close", 2), ("filler_um", 1)]
    levels = {f["focus_id"]: f for f in facts.to_json()["focus_levels"]}
    assert levels["pacing"]["level"] == 5 and levels["pacing"]["band"] == "developing"
    assert levels["clarity"]["level"] is None and levels["clarity"]["samples"] == 0


async def test_a_new_user_has_empty_facts(migrated_pool: Pool) -> None:
    facts = await user_facts(migrated_pool, "facts-nobody")
    assert facts.to_json() == {
        "sessions_7d": 0,
        "minutes_7d": 0,
        "streak_days": 0,
        "top_errors": [],
        "focus_levels": [],
    }


async def test_a_streak_must_reach_today_or_yesterday(migrated_pool: Pool) -> None:
    pool = migrated_pool
    stale = await seed_session(pool, "facts-cid", "3 days", "2 days")
    for ago in ("2 days", "3 days"):
        await seed_turn(pool, "facts-cid", stale, ago)
    assert (await user_facts(pool, "facts-cid")).streak_days == 0
    fresh = await seed_session(pool, "facts-dee", "1 day", "1 day")
    await seed_turn(pool, "facts-dee", fresh, "1 day")
    assert (await user_facts(pool, "facts-dee")).streak_days == 1


def test_streak_days_counts_consecutive_days() -> None:
    today = date(2026, 12, 7)

    def days(*back: int) -> list[date]:
        return [today - timedelta(days=n) for n in back]

    assert streak_days(days(0, 1, 2, 4), today) == 3
    assert streak_days(days(1, 2), today) == 2
    assert streak_days(days(2, 3), today) == 0
    assert streak_days([], today) == 0


def answer(user: str, key: str, *, source: str = "model", ttl_s: float = 3600) -> NewSkillResult:
    body = {"tips": [f"tip for {user}"]}
    return NewSkillResult(user, "feedback", "take", key, body, source, "m1", ttl_s)


async def test_fresh_answers_are_found_only_for_their_user(migrated_pool: Pool) -> None:
    pool = migrated_pool
    stored = await store_result(pool, answer("skill-ann", "k1"))
    found = await fresh_result(pool, "skill-ann", "feedback", "k1")
    assert found is not None and found.id == stored.id and found.body == stored.body
    assert await fresh_result(pool, "skill-bob", "feedback", "k1") is None
    assert await fresh_result(pool, "skill-ann", "practice", "k1") is None


async def test_expired_and_fallback_answers_are_not_served_again(migrated_pool: Pool) -> None:
    pool = migrated_pool
    await store_result(pool, answer("skill-cid", "expired", ttl_s=0))
    await store_result(pool, answer("skill-cid", "fell", source="fallback"))
    assert await fresh_result(pool, "skill-cid", "feedback", "expired") is None
    assert await fresh_result(pool, "skill-cid", "feedback", "fell") is None


async def test_latest_results_keep_the_newest_of_each_topic(migrated_pool: Pool) -> None:
    pool = migrated_pool
    first = await store_result(pool, answer("skill-dee", "a"))
    second = await store_result(pool, answer("skill-dee", "b"))
    other = NewSkillResult(
        "skill-dee", "feedback", "session", "c", {"tips": ["x"]}, "model", None, 60
    )
    third = await store_result(pool, other)
    latest = await latest_results(pool, "skill-dee", "feedback")
    assert [r.id for r in latest] == [third.id, second.id]
    assert first.id not in [r.id for r in latest]
    assert await latest_results(pool, "skill-eve", "feedback") == []
