"""A job's result is stored in one statement: its rows, its turns marked assessed and its prompt
run, all only if the attempt still holds the job."""

from __future__ import annotations

import uuid
from typing import Any

from db import jobs
from db.assessments import NewAssessment, assessments_for_job, store_job_result
from db.pool import Pool
from db.prompt_runs import NewPromptRun
from tests.assess.helpers import add_turn, open_session


def _rows(user: str, sid: str, ids: tuple[int, ...]) -> list[NewAssessment]:
    group = uuid.uuid4()
    return [
        NewAssessment(
            user_id=user,
            session_id=sid,
            interaction_ids=ids,
            focus_id=focus,
            kind="multi_turn",
            category=category,
            score=score,
            explanation=f"{focus} explained",
            rubric_version="r-test",
            errors=[{"quote": "um", "fix": "pause"}] if category == "error" else [],
            tags=("pace", "breath") if category == "progress" else (),
            group_id=group,
        )
        for focus, category, score in (("pacing", "progress", 7), ("clarity", "error", None))
    ]


async def _claimed(pool: Pool, user: str) -> tuple[str, tuple[int, int], jobs.JobRow]:
    sid = await open_session(pool, user)
    first, _ = await add_turn(pool, user, sid)
    second, job_id = await add_turn(pool, user, sid)
    job = await jobs.claim_job(pool, lease_s=30, max_attempts=5, job_id=job_id)
    assert job is not None
    return sid, (first, second), job


async def test_the_result_is_one_statement_and_complete(migrated_pool: Pool) -> None:
    sid, ids, job = await _claimed(migrated_pool, "u-result")
    run = NewPromptRun(request_id=f"assess-{job.id}", purpose="assess", status="ok", latency_ms=9)
    statements: list[str] = []
    async with migrated_pool.acquire() as conn:
        # A connection's first use of the statement may look its types up (once per connection).
        warm_sid, warm_ids, warm = await _claimed(migrated_pool, "u-result-warm")
        await store_job_result(
            conn,
            job_id=warm.id,
            attempt=warm.attempts,
            scope="multi_turn",
            rows=_rows("u-result-warm", warm_sid, warm_ids),
            interaction_ids=list(warm_ids),
            run=None,
        )
        raw: Any = conn
        raw.add_query_logger(lambda record: statements.append(record.query))
        stored = await store_job_result(
            conn,
            job_id=job.id,
            attempt=job.attempts,
            scope="multi_turn",
            rows=_rows("u-result", sid, ids),
            interaction_ids=list(ids),
            run=run,
        )
    assert len(statements) == 1
    assert stored is not None
    assert [(r.focus_id, r.score, r.interaction_ids) for r in stored] == [
        ("pacing", 7, list(ids)),
        ("clarity", None, list(ids)),
    ]
    assert stored[0].tags == ["pace", "breath"] and stored[1].errors == [
        {"quote": "um", "fix": "pause"}
    ]
    assert stored[0].group_id == stored[1].group_id is not None
    assert (await jobs.get_job(migrated_pool, job.id)).status == "done"  # type: ignore[union-attr]
    states = await migrated_pool.fetch(
        "SELECT assess_state, assess_job_id FROM interactions WHERE id = ANY($1::bigint[])",
        list(ids),
    )
    assert {(r["assess_state"], r["assess_job_id"]) for r in states} == {("assessed", job.id)}
    runs = await migrated_pool.fetchval(
        "SELECT count(*) FROM prompt_runs WHERE job_id IS NULL AND request_id = $1", run.request_id
    )
    assert runs == 1


async def test_a_lost_attempt_writes_nothing(migrated_pool: Pool) -> None:
    sid, ids, job = await _claimed(migrated_pool, "u-lost")
    stored = await store_job_result(
        migrated_pool,
        job_id=job.id,
        attempt=job.attempts + 1,  # another attempt holds the job now
        scope="multi_turn",
        rows=_rows("u-lost", sid, ids),
        interaction_ids=list(ids),
        run=NewPromptRun(request_id="assess-lost", purpose="assess", status="ok", latency_ms=1),
    )
    assert stored is None
    assert await assessments_for_job(migrated_pool, job.id) == []
    assert (await jobs.get_job(migrated_pool, job.id)).status == "running"  # type: ignore[union-attr]
    assert (
        await migrated_pool.fetchval(
            "SELECT count(*) FROM prompt_runs WHERE request_id = 'assess-lost'"
        )
        == 0
    )
    states = await migrated_pool.fetch(
        "SELECT assess_state FROM interactions WHERE id = ANY($1::bigint[])", list(ids)
    )
    assert "assessed" not in {r["assess_state"] for r in states}


async def test_a_row_already_stored_for_a_focus_is_kept(migrated_pool: Pool) -> None:
    sid, ids, job = await _claimed(migrated_pool, "u-kept")
    rows = _rows("u-kept", sid, ids)
    await migrated_pool.execute(
        "INSERT INTO assessments (job_id, user_id, session_id, focus_id, kind, category,"
        " explanation, rubric_version) VALUES ($1, $2, $3, 'pacing', 'multi_turn', 'progress',"
        " 'the first', 'r-test')",
        job.id,
        "u-kept",
        sid,
    )
    stored = await store_job_result(
        migrated_pool,
        job_id=job.id,
        attempt=job.attempts,
        scope="multi_turn",
        rows=rows,
        interaction_ids=list(ids),
        run=None,
    )
    assert stored is not None and [r.focus_id for r in stored] == ["clarity"]
    kept = await assessments_for_job(migrated_pool, job.id)
    assert [(r.focus_id, r.explanation) for r in kept] == [
        ("pacing", "the first"),
        ("clarity", "clarity explained"),
    ]
