"""`prompt_runs`: one row per model call, for chat turns, assessments and coaching skills."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from db.pool import Executor

__all__ = ["COLUMNS", "NewPromptRun", "insert_prompt_run"]

Purpose = Literal["chat", "assess", "skill"]


@dataclass(frozen=True, slots=True)
class NewPromptRun:
    """A model call's row, each field named as its column (the INSERT is built from them)."""

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


COLUMNS = tuple(f.name for f in fields(NewPromptRun))
_INSERT = (
    f"INSERT INTO prompt_runs ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))}) RETURNING id"
)


async def insert_prompt_run(db: Executor, run: NewPromptRun) -> int:
    """Record one model call; return its id."""
    row_id = await db.fetchval(_INSERT, *(getattr(run, column) for column in COLUMNS))
    return int(row_id)
