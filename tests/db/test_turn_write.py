"""A finished turn's write is one statement: one round trip to Postgres on the turn's way to
`response.completed`, atomic by itself (no BEGIN and COMMIT of its own)."""

from __future__ import annotations

from typing import Any

from db import interactions, sessions
from db.pool import Pool
from tests.db.test_schema import chat_run, turn


async def test_a_turn_is_written_in_one_statement(migrated_pool: Pool) -> None:
    opened = await sessions.open_session(migrated_pool, "u-one", None, idle_s=600)
    sid = opened.session.id
    statements: list[str] = []
    async with migrated_pool.acquire() as conn:
        raw: Any = conn

        def logged(record: Any) -> None:
            statements.append(record.query)

        raw.add_query_logger(logged)
        write = await interactions.record_turn(
            conn, turn(sid, "u-one", "req-one"), chat_run("req-one"), enqueue=True
        )
        raw.remove_query_logger(logged)
    assert len(statements) == 1
    assert write.interaction_id is not None and write.job_id is not None
    row = await migrated_pool.fetchrow(
        "SELECT (SELECT count(*) FROM prompt_runs WHERE request_id = 'req-one') AS runs,"
        " (SELECT interaction_id FROM assessment_jobs WHERE id = $1) AS job_turn,"
        " (SELECT last_active_at > opened_at FROM sessions WHERE id = $2) AS touched",
        write.job_id,
        sid,
    )
    assert dict(row) == {"runs": 1, "job_turn": write.interaction_id, "touched": True}


async def test_a_safety_answer_is_stored_without_a_job(migrated_pool: Pool) -> None:
    opened = await sessions.open_session(migrated_pool, "u-safe", None, idle_s=600)
    write = await interactions.record_turn(
        migrated_pool,
        turn(opened.session.id, "u-safe", "req-safe", safety_flag="injury"),
        chat_run("req-safe"),
        enqueue=True,
    )
    assert write.interaction_id is not None and write.job_id is None
