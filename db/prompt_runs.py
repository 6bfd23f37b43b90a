"""`prompt_runs`: one row per model call, for chat turns and for assessments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from db.pool import Executor

__all__ = ["NewPromptRun", "insert_prompt_run"]

Purpose = Literal["chat", "assess"]


@dataclass(frozen=True, slots=True)
class NewPromptRun:
    request_id: str
    purpose: Purpose
    status: str
    latency_ms: float
    user_id: str | None = None
    session_id: str | None = None
    job_id: int | None = None
    provider: str | None = None
    model: str | None = None
    rubric_version: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_ms: float | None = None
    cost_usd: float = 0.0


async def insert_prompt_run(db: Executor, run: NewPromptRun) -> int:
    """Record one model call; return its id."""
    row_id = await db.fetchval(
        "INSERT INTO prompt_runs (request_id, purpose, status, latency_ms, user_id, session_id,"
        " job_id, provider, model, rubric_version, input_tokens, output_tokens, ttft_ms, cost_usd)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        run.request_id,
        run.purpose,
        run.status,
        run.latency_ms,
        run.user_id,
        run.session_id,
        run.job_id,
        run.provider,
        run.model,
        run.rubric_version,
        run.input_tokens,
        run.output_tokens,
        run.ttft_ms,
        run.cost_usd,
    )
    return int(row_id)
