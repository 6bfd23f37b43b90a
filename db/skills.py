"""`skill_results`: every answer a coaching skill gave, and the cache lookups over them.

Every read is keyed by the user: one user's answers are never found for another, whatever the
cache key says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.pool import Executor, Pool
from db.prompt_runs import NewPromptRun, insert_prompt_run

__all__ = ["NewSkillResult", "SkillResult", "fresh_result", "latest_results", "store_result"]

_COLUMNS = "id, user_id, skill, topic, cache_key, body, source, model, created_at, expires_at"


@dataclass(frozen=True, slots=True)
class NewSkillResult:
    user_id: str
    skill: str
    topic: str
    cache_key: str
    body: dict[str, Any]
    source: str  # model | fallback
    model: str | None
    ttl_s: float  # the answer is fresh this long; 0 = never served from the cache


@dataclass(frozen=True, slots=True)
class SkillResult:
    id: int
    user_id: str
    skill: str
    topic: str
    cache_key: str
    body: dict[str, Any]
    source: str
    model: str | None
    created_at: datetime
    expires_at: datetime


async def store_result(
    pool: Pool, new: NewSkillResult, run: NewPromptRun | None = None
) -> SkillResult:
    """Store one answer (and the user, if new) with the model call that made it."""
    async with pool.acquire() as conn, conn.transaction():
        if run is not None:
            await insert_prompt_run(conn, run)
        await conn.execute(
            "INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", new.user_id
        )
        record = await conn.fetchrow(
            "INSERT INTO skill_results (user_id, skill, topic, cache_key, body, source, model,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7,"
            " clock_timestamp() + make_interval(secs => $8))"
            f" RETURNING {_COLUMNS}",
            new.user_id,
            new.skill,
            new.topic,
            new.cache_key,
            new.body,
            new.source,
            new.model,
            new.ttl_s,
        )
    return SkillResult(**dict(record))


async def fresh_result(
    db: Executor, user_id: str, skill: str, cache_key: str
) -> SkillResult | None:
    """The user's newest model answer under `cache_key` that has not expired."""
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM skill_results WHERE user_id = $1 AND skill = $2"
        " AND cache_key = $3 AND expires_at > clock_timestamp() AND source = 'model'"
        " ORDER BY expires_at DESC LIMIT 1",
        user_id,
        skill,
        cache_key,
    )
    return None if record is None else SkillResult(**dict(record))


async def latest_results(db: Executor, user_id: str, skill: str) -> list[SkillResult]:
    """The user's newest answer of each topic of `skill`, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM (SELECT DISTINCT ON (topic) {_COLUMNS} FROM skill_results"
        " WHERE user_id = $1 AND skill = $2 ORDER BY topic, created_at DESC, id DESC) latest"
        " ORDER BY created_at DESC, id DESC",
        user_id,
        skill,
    )
    return [SkillResult(**dict(r)) for r in rows]
