"""End to end: the pipeline assesses through the real OpenAI adapter against the simulated
upstream over real HTTP, on a real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from assess.assessor import Assessor
from assess.pipeline import PipelineConfig, open_pipeline
from db import assessments as assessments_db
from db import jobs as jobs_db
from db.pool import Pool
from gateway.settings import ProviderConfig
from providers.factory import build_chat_provider
from providers.routing import Router, Target
from providers.sim import running_sim
from tests.assess.helpers import add_turn, open_session, wait_jobs

CONFIG = PipelineConfig(workers=2, poll_s=0.1, sweep_s=3600, drain_s=2)


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Any]:
    async with running_sim() as server:
        await server.set_knobs(ttft_ms=5, tokens_per_s=0)
        yield server


def sim_router(url: str) -> Router:
    config = ProviderConfig(kind="openai", base_url=f"{url}/v1", api_key="sk-sim")
    provider = build_chat_provider("primary", config, sim_url=url)
    return Router({"primary": provider}, {"assess": [Target("primary", "gpt-4o-mini")]})


async def test_sim_assessments_validate_and_store(migrated_pool: Pool, sim: Any) -> None:
    await sim.set_knobs(invalid_json_rate=0.0)
    sid = await open_session(migrated_pool, "u-sim")
    router = sim_router(sim.url)
    async with open_pipeline(migrated_pool, Assessor(router), CONFIG) as pipeline:
        jobs = [(await add_turn(migrated_pool, "u-sim", sid))[1] for _ in range(2)]
        for text in ("How do I stop saying um?", "What about like?", "Are pauses fine?"):
            jobs.append((await add_turn(migrated_pool, "u-sim", sid, text))[1])
        for job_id in jobs:
            pipeline.submit_nowait(job_id)
        statuses = await wait_jobs(migrated_pool, jobs, timeout_s=30)
    await router.aclose()
    assert set(statuses.values()) == {"done"}, [
        await jobs_db.get_job(migrated_pool, j) for j in jobs
    ]
    rows = await assessments_db.list_assessments(migrated_pool, sid, limit=100)
    kinds = sorted({r.kind for r in rows})
    assert "interaction" in kinds
    assert all(r.rubric_version == "2026-11-rubric-1" for r in rows)
    assert all(r.score is None or 1 <= r.score <= 10 for r in rows)


async def test_sim_invalid_json_fails_the_job_after_one_retry(
    migrated_pool: Pool, sim: Any
) -> None:
    await sim.set_knobs(invalid_json_rate=1.0)
    sid = await open_session(migrated_pool, "u-sim-bad")
    router = sim_router(sim.url)
    try:
        async with open_pipeline(migrated_pool, Assessor(router), CONFIG) as pipeline:
            _, job_id = await add_turn(migrated_pool, "u-sim-bad", sid)
            pipeline.submit_nowait(job_id)
            assert await wait_jobs(migrated_pool, [job_id], timeout_s=30) == {job_id: "failed"}
    finally:
        await sim.set_knobs(invalid_json_rate=0.0)
        await router.aclose()
    job = await jobs_db.get_job(migrated_pool, job_id)
    assert job is not None and job.last_error is not None and "invalid answer" in job.last_error
    assert await assessments_db.assessments_for_job(migrated_pool, job_id) == []
    runs = await migrated_pool.fetch(
        "SELECT status FROM prompt_runs WHERE job_id = $1 ORDER BY id", job_id
    )
    assert [r["status"] for r in runs] == ["invalid", "invalid"]
