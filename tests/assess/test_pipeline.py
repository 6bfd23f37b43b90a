"""The pipeline in-process, on a real Postgres, with a fake model behind the real router."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from assess.assessor import Assessor
from assess.pipeline import Pipeline, PipelineConfig, open_pipeline
from assess.progress import user_progress
from assess.work import JobRules
from db import assessments as assessments_db
from db import jobs as jobs_db
from db.pool import Pool
from tests.assess.fakes import FakeAssessProvider, fake_router
from tests.assess.helpers import (
    add_turn,
    job_statuses,
    lease_of,
    open_session,
    wait_db_time,
    wait_jobs,
    wait_renewed,
)
from tests.conftest import eventually

FAST = PipelineConfig(workers=2, queue_size=16, lease_s=30, poll_s=0.1, drain_s=2, sweep_s=0.1)


class Notes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, user_id: str, session_id: str, row: dict[str, Any]) -> None:
        self.seen.append((user_id, session_id, row))


async def test_turn_is_assessed_per_focus_and_notified(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider(score=9)
    notes = Notes()
    sid = await open_session(migrated_pool, "u-one")
    async with open_pipeline(
        migrated_pool, Assessor(fake_router(provider)), FAST, notify=notes
    ) as pipeline:
        iid, job_id = await add_turn(migrated_pool, "u-one", sid)
        assert pipeline.submit_nowait(job_id)
        assert await wait_jobs(migrated_pool, [job_id]) == {job_id: "done"}
        await pipeline.wait_idle()
    rows = await assessments_db.assessments_for_job(migrated_pool, job_id)
    assert sorted(r.focus_id for r in rows) == ["clarity", "pacing"]
    assert all(r.kind == "interaction" and r.interaction_ids == [iid] for r in rows)
    assert all(r.group_id is None and r.score == 9 for r in rows)
    assert sorted(n[2]["focus_id"] for n in notes.seen) == ["clarity", "pacing"]
    assert {(n[0], n[1]) for n in notes.seen} == {("u-one", sid)}
    runs = await migrated_pool.fetch(
        "SELECT purpose, rubric_version, input_tokens FROM prompt_runs WHERE job_id = $1", job_id
    )
    assert [(r["purpose"], r["input_tokens"]) for r in runs] == [("assess", 120)]
    levels = {p.focus_id: p for p in await user_progress(migrated_pool, "u-one")}
    assert levels["pacing"].level == 9 and levels["pacing"].band == "mastery"


async def test_short_turns_become_one_multi_turn_group(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider()
    sid = await open_session(migrated_pool, "u-multi")
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST) as pipeline:
        jobs = []
        for text in ("How do I stop saying um?", "What about like?", "And pauses, are they ok?"):
            _, job_id = await add_turn(migrated_pool, "u-multi", sid, text)
            pipeline.submit_nowait(job_id)
            await wait_jobs(migrated_pool, [job_id])
            jobs.append(job_id)
        _, chit = await add_turn(migrated_pool, "u-multi", sid, "thanks!")
        pipeline.submit_nowait(chit)
        await wait_jobs(migrated_pool, [chit])
    scopes = await migrated_pool.fetch(
        "SELECT id, scope FROM assessment_jobs WHERE id = ANY($1::bigint[]) ORDER BY id",
        [*jobs, chit],
    )
    assert [r["scope"] for r in scopes] == ["buffer", "buffer", "multi_turn", "none"]
    rows = await assessments_db.list_assessments(migrated_pool, sid, limit=50)
    assert len(rows) == 2 and {r.kind for r in rows} == {"multi_turn"}
    assert len({r.group_id for r in rows}) == 1 and rows[0].group_id is not None
    assert len(rows[0].interaction_ids) == 3


async def test_turns_of_one_session_assessed_at_once_still_form_a_group(
    migrated_pool: Pool,
) -> None:
    provider = FakeAssessProvider()
    sid = await open_session(migrated_pool, "u-race")
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST) as pipeline:
        _, first = await add_turn(migrated_pool, "u-race", sid, "How do I stop saying um?")
        pipeline.submit_nowait(first)
        await wait_jobs(migrated_pool, [first])
        # Two short turns whose jobs the two workers take at the same time: each alone would
        # see one buffered turn; together they make three, one multi-turn group.
        _, second = await add_turn(migrated_pool, "u-race", sid, "What about like?")
        _, third = await add_turn(migrated_pool, "u-race", sid, "And pauses, are they ok?")
        pipeline.submit_nowait(second)
        pipeline.submit_nowait(third)
        await wait_jobs(migrated_pool, [second, third])
    scopes = await migrated_pool.fetch(
        "SELECT scope FROM assessment_jobs WHERE id = ANY($1::bigint[])", [first, second, third]
    )
    assert sorted(r["scope"] for r in scopes) == ["buffer", "buffer", "multi_turn"]
    rows = await assessments_db.list_assessments(migrated_pool, sid, limit=50)
    assert rows and all(len(r.interaction_ids) == 3 for r in rows)


async def test_invalid_answer_is_retried_once(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider(invalid=1)
    sid = await open_session(migrated_pool, "u-retry")
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST) as pipeline:
        _, job_id = await add_turn(migrated_pool, "u-retry", sid)
        pipeline.submit_nowait(job_id)
        assert await wait_jobs(migrated_pool, [job_id]) == {job_id: "done"}
    assert len(provider.calls) == 2
    statuses = await migrated_pool.fetch(
        "SELECT status FROM prompt_runs WHERE job_id = $1 ORDER BY id", job_id
    )
    assert [r["status"] for r in statuses] == ["invalid", "ok"]


async def test_twice_invalid_fails_the_job_and_stores_nothing(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider(invalid=2)
    sid = await open_session(migrated_pool, "u-invalid")
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST) as pipeline:
        _, job_id = await add_turn(migrated_pool, "u-invalid", sid)
        pipeline.submit_nowait(job_id)
        assert await wait_jobs(migrated_pool, [job_id]) == {job_id: "failed"}
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.last_error is not None and "not JSON" in job.last_error
    assert await assessments_db.assessments_for_job(migrated_pool, job_id) == []


async def test_unavailable_model_puts_the_job_back(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider(fail=True)
    sid = await open_session(migrated_pool, "u-down")
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST) as pipeline:
        _, job_id = await add_turn(migrated_pool, "u-down", sid)
        pipeline.submit_nowait(job_id)
        await eventually(lambda: bool(provider.calls))
        await pipeline.wait_idle()
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.status == "pending" and job.attempts == 1
    assert job.last_error is not None and "unavailable" in job.last_error
    await migrated_pool.execute(
        "UPDATE assessment_jobs SET run_after = now() WHERE id = $1", job_id
    )
    provider.fail = False
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST):
        assert await wait_jobs(migrated_pool, [job_id]) == {job_id: "done"}


async def test_full_queue_leaves_jobs_pending(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider()
    provider.gate = asyncio.Event()
    sid = await open_session(migrated_pool, "u-full")
    config = PipelineConfig(workers=1, queue_size=1, poll_s=3600, drain_s=5, sweep_s=3600)
    pipeline = Pipeline(migrated_pool, Assessor(fake_router(provider)), config)
    await pipeline.start()
    job_ids = [(await add_turn(migrated_pool, "u-full", sid))[1] for _ in range(5)]
    accepted = [pipeline.submit_nowait(j) for j in job_ids]
    assert accepted[:1] == [True] and not all(accepted)
    dropped = [j for j, ok in zip(job_ids, accepted, strict=True) if not ok]
    assert pipeline.stats.dropped_hints == len(dropped)
    provider.gate.set()
    await pipeline.aclose()
    statuses = await job_statuses(migrated_pool, job_ids)
    assert all(statuses[j] == "pending" for j in dropped)
    assert all(statuses[j] == "done" for j, ok in zip(job_ids, accepted, strict=True) if ok)
    # A later pipeline's poll finds what the queue had no room for.
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), FAST):
        assert set((await wait_jobs(migrated_pool, job_ids)).values()) == {"done"}


async def test_idle_session_is_closed_and_summarised(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider()
    notes = Notes()
    sid = await open_session(migrated_pool, "u-summary")
    _, turn_job = await add_turn(migrated_pool, "u-summary", sid, "How do I stop saying um?")
    await migrated_pool.execute(
        "UPDATE sessions SET last_active_at = now() - interval '2 hours' WHERE id = $1", sid
    )
    config = PipelineConfig(poll_s=0.1, sweep_s=0.1, session_idle_s=60)
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), config, notify=notes):
        await eventually(lambda: any(n[2]["kind"] == "session_summary" for n in notes.seen))
    summary = [n[2] for n in notes.seen if n[2]["kind"] == "session_summary"]
    assert summary and all(s["interaction_ids"] == [] and s["session_id"] == sid for s in summary)
    closed = await migrated_pool.fetchval("SELECT closed_at FROM sessions WHERE id = $1", sid)
    assert closed is not None
    assert (await job_statuses(migrated_pool, [turn_job]))[turn_job] == "done"


async def test_drain_finishes_running_work_and_leaves_the_rest(migrated_pool: Pool) -> None:
    provider = FakeAssessProvider(delay_s=0.5)
    sid = await open_session(migrated_pool, "u-drain")
    rules = JobRules(call_timeout_s=10)
    config = PipelineConfig(workers=1, queue_size=16, poll_s=3600, drain_s=0.7, rules=rules)
    pipeline = Pipeline(migrated_pool, Assessor(fake_router(provider)), config)
    await pipeline.start()
    job_ids = [(await add_turn(migrated_pool, "u-drain", sid))[1] for _ in range(4)]
    for j in job_ids:
        pipeline.submit_nowait(j)
    await eventually(lambda: bool(provider.calls))
    started = asyncio.get_running_loop().time()
    await pipeline.aclose()
    assert asyncio.get_running_loop().time() - started < 2.0
    assert not pipeline.submit_nowait(job_ids[0])
    statuses = await job_statuses(migrated_pool, job_ids)
    assert statuses[job_ids[0]] == "done"
    assert "running" not in statuses.values()
    assert list(statuses.values()).count("pending") >= 2
    attempts = await migrated_pool.fetch(
        "SELECT attempts FROM assessment_jobs WHERE id = ANY($1::bigint[]) AND status = 'pending'",
        job_ids,
    )
    assert {r["attempts"] for r in attempts} == {0}  # handed back, not counted
    async with open_pipeline(migrated_pool, Assessor(fake_router(FakeAssessProvider())), FAST):
        assert set((await wait_jobs(migrated_pool, job_ids)).values()) == {"done"}


async def test_a_job_longer_than_its_lease_keeps_it(migrated_pool: Pool) -> None:
    """The model call outlasts the lease the job was claimed with: the heartbeat renews it, so a
    second pipeline polling all the while never takes the job, and it is assessed once."""
    first, second = FakeAssessProvider(), FakeAssessProvider()
    first.gate = asyncio.Event()
    config = PipelineConfig(workers=1, lease_s=1.5, poll_s=0.05, drain_s=2, sweep_s=3600)
    sid = await open_session(migrated_pool, "u-long")
    _, job_id = await add_turn(migrated_pool, "u-long", sid)
    async with open_pipeline(migrated_pool, Assessor(fake_router(first)), config) as pipeline:
        pipeline.submit_nowait(job_id)
        await eventually(lambda: bool(first.calls))
        claimed = await lease_of(migrated_pool, job_id)
        async with open_pipeline(migrated_pool, Assessor(fake_router(second)), config):
            # A whole lease past the one it was claimed with, the job is still the first's.
            await wait_db_time(migrated_pool, claimed + timedelta(seconds=config.lease_s))
            job = await jobs_db.get_job(migrated_pool, job_id)
            assert job is not None and job.status == "running" and job.attempts == 1
            assert job.lease_until is not None and job.lease_until > claimed
            assert second.calls == []
            first.gate.set()
            assert await wait_jobs(migrated_pool, [job_id]) == {job_id: "done"}
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.attempts == 1
    assert len(first.calls) == 1 and second.calls == []
    assert len(await assessments_db.assessments_for_job(migrated_pool, job_id)) == 2
    assert pipeline.stats.done == 1 and pipeline.stats.lost == 0


async def test_a_job_taken_over_is_stopped(migrated_pool: Pool) -> None:
    """Once another attempt holds the job, the next beat cancels this one's hung model call."""
    provider = FakeAssessProvider(hang=True)
    config = PipelineConfig(workers=1, lease_s=0.6, poll_s=3600, drain_s=2, sweep_s=3600)
    sid = await open_session(migrated_pool, "u-taken")
    _, job_id = await add_turn(migrated_pool, "u-taken", sid)
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), config) as pipeline:
        pipeline.submit_nowait(job_id)
        await eventually(lambda: bool(provider.calls))
        # As if this worker's lease had run out unrenewed and another worker had claimed it.
        await migrated_pool.execute(
            "UPDATE assessment_jobs SET lease_until = now() - interval '1 s' WHERE id = $1", job_id
        )
        taken = await jobs_db.claim_job(migrated_pool, lease_s=60, max_attempts=5, job_id=job_id)
        assert taken is not None and taken.attempts == 2
        async with asyncio.timeout(10):
            await pipeline.wait_idle()  # the call that would never answer was cancelled
        assert pipeline.stats.lost == 1 and pipeline.stats.done == 0
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.status == "running" and job.attempts == 2  # still the taker's
    assert await assessments_db.assessments_for_job(migrated_pool, job_id) == []
    assert await jobs_db.fail_job(migrated_pool, job_id, 2, "the taker gives up")  # tidy up


async def test_a_renewal_that_cannot_get_through_is_tried_again(
    migrated_pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """The jobs table is locked away from the heartbeat past the end of the lease (each renewal
    times out); once it is free again the same attempt renews, keeps the job and finishes it."""
    provider = FakeAssessProvider()
    provider.gate = asyncio.Event()
    config = PipelineConfig(workers=1, lease_s=0.9, poll_s=0.05, drain_s=2, sweep_s=3600)
    sid = await open_session(migrated_pool, "u-stuck")
    _, job_id = await add_turn(migrated_pool, "u-stuck", sid)
    caplog.set_level(logging.WARNING, logger="coach.assess")
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), config) as pipeline:
        pipeline.submit_nowait(job_id)
        await eventually(lambda: bool(provider.calls))
        held = await lease_of(migrated_pool, job_id)
        async with migrated_pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE assessment_jobs IN EXCLUSIVE MODE")
            await wait_db_time(migrated_pool, held)  # the lease ran out meanwhile
        await wait_renewed(migrated_pool, job_id, held)
        provider.gate.set()
        assert await wait_jobs(migrated_pool, [job_id]) == {job_id: "done"}
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.attempts == 1
    assert len(provider.calls) == 1 and pipeline.stats.done == 1
    assert "lease renewal of 1 jobs failed (TimeoutError)" in caplog.text


async def test_a_locked_job_does_not_hold_up_the_others_renewals(migrated_pool: Pool) -> None:
    """All leases are renewed in one statement; a job's row that another transaction holds
    locked is skipped (and renewed once free), not waited for: the other job's lease is
    renewed meanwhile, and both jobs finish once."""
    provider = FakeAssessProvider()
    provider.gate = asyncio.Event()
    config = PipelineConfig(workers=2, lease_s=0.9, poll_s=3600, drain_s=2, sweep_s=3600)
    ids = []
    for user in ("u-row-locked", "u-row-free"):
        sid = await open_session(migrated_pool, user)
        ids.append((await add_turn(migrated_pool, user, sid))[1])
    locked_id, free_id = ids
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), config) as pipeline:
        for job_id in ids:
            pipeline.submit_nowait(job_id)
        await eventually(lambda: len(provider.calls) == 2)
        async with migrated_pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM assessment_jobs WHERE id = $1 FOR UPDATE", locked_id)
            locked_lease = await lease_of(migrated_pool, locked_id)
            free_lease = await lease_of(migrated_pool, free_id)
            await wait_renewed(migrated_pool, free_id, free_lease)
            await wait_renewed(migrated_pool, free_id, await lease_of(migrated_pool, free_id))
            assert await lease_of(migrated_pool, locked_id) == locked_lease
        await wait_renewed(migrated_pool, locked_id, locked_lease)
        provider.gate.set()
        assert await wait_jobs(migrated_pool, ids) == {locked_id: "done", free_id: "done"}
    for job_id in ids:
        job = await jobs_db.get_job(migrated_pool, job_id)
        assert job is not None and job.attempts == 1
    assert pipeline.stats.done == 2 and pipeline.stats.lost == 0


async def test_closing_cancels_a_leased_job_and_hands_it_back(migrated_pool: Pool) -> None:
    """A job still running when the drain ends is cancelled with its worker (its task does not
    outlive the pipeline) and goes back to pending, the attempt not counted."""
    provider = FakeAssessProvider(hang=True)
    config = PipelineConfig(workers=1, lease_s=0.6, poll_s=3600, drain_s=0.3, sweep_s=3600)
    sid = await open_session(migrated_pool, "u-close")
    _, job_id = await add_turn(migrated_pool, "u-close", sid)
    async with open_pipeline(migrated_pool, Assessor(fake_router(provider)), config) as pipeline:
        pipeline.submit_nowait(job_id)
        await eventually(lambda: bool(provider.calls))
        await wait_renewed(migrated_pool, job_id, await lease_of(migrated_pool, job_id))
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("assess-job-")]
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.status == "pending" and job.attempts == 0
    assert pipeline.stats.released == 1
    await migrated_pool.execute("DELETE FROM assessment_jobs WHERE id = $1", job_id)  # tidy up
