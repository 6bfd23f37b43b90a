"""`assessments`: per-focus rows written by a job, unique per (job, focus)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from db.jobs import complete_job
from db.pool import Executor, Pool
from db.prompt_runs import NewPromptRun, insert_prompt_run

__all__ = [
    "AssessmentRow",
    "NewAssessment",
    "assessments_for_job",
    "list_assessments",
    "progress_scores",
    "store_job_result",
    "user_assessments",
]

_COLUMNS = (
    "id, job_id, user_id, session_id, interaction_ids, focus_id, kind, category, score,"
    " explanation, errors, tags, group_id, rubric_version, created_at"
)


@dataclass(frozen=True, slots=True)
class NewAssessment:
    user_id: str
    session_id: str
    interaction_ids: tuple[int, ...]
    focus_id: str
    kind: str
    category: str
    score: int | None
    explanation: str
    rubric_version: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    group_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class AssessmentRow:
    id: int
    job_id: int
    user_id: str
    session_id: str
    interaction_ids: list[int]
    focus_id: str
    kind: str
    category: str
    score: int | None
    explanation: str
    errors: list[dict[str, Any]]
    tags: list[str]
    group_id: UUID | None
    rubric_version: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready values (ids as strings, times in ISO 8601)."""
        return {
            "id": str(self.id),
            "job_id": str(self.job_id),
            "user_id": self.user_id,
            "session_id": self.session_id,
            "interaction_ids": [str(i) for i in self.interaction_ids],
            "focus_id": self.focus_id,
            "kind": self.kind,
            "category": self.category,
            "score": self.score,
            "explanation": self.explanation,
            "errors": self.errors,
            "tags": self.tags,
            "group_id": None if self.group_id is None else str(self.group_id),
            "rubric_version": self.rubric_version,
            "created_at": self.created_at.isoformat(),
        }


def _row(record: Any) -> AssessmentRow:
    return AssessmentRow(**dict(record))


async def store_job_result(
    pool: Pool,
    *,
    job_id: int,
    attempt: int,
    scope: str,
    rows: Sequence[NewAssessment],
    interaction_ids: Sequence[int],
    run: NewPromptRun | None,
) -> list[AssessmentRow] | None:
    """In ONE transaction: mark the job done (only if `attempt` still holds it), insert its rows
    (a row already there for the same job and focus is kept, not doubled), mark the interactions
    assessed, record the prompt run. Returns the rows inserted, or None if the lease was lost."""
    async with pool.acquire() as conn, conn.transaction():
        if not await complete_job(conn, job_id, attempt, scope):
            return None
        inserted: list[AssessmentRow] = []
        for a in rows:
            record = await conn.fetchrow(
                "INSERT INTO assessments (job_id, user_id, session_id, interaction_ids, focus_id,"
                " kind, category, score, explanation, errors, tags, group_id, rubric_version)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                f" ON CONFLICT ON CONSTRAINT assessments_job_focus DO NOTHING RETURNING {_COLUMNS}",
                job_id,
                a.user_id,
                a.session_id,
                list(a.interaction_ids),
                a.focus_id,
                a.kind,
                a.category,
                a.score,
                a.explanation,
                a.errors,
                list(a.tags),
                a.group_id,
                a.rubric_version,
            )
            if record is not None:
                inserted.append(_row(record))
        await conn.execute(
            "UPDATE interactions SET assess_state = 'assessed', assess_job_id = $2"
            " WHERE id = ANY($1::bigint[])",
            list(interaction_ids),
            job_id,
        )
        if run is not None:
            await insert_prompt_run(conn, run)
        return inserted


async def list_assessments(
    db: Executor, session_id: str, *, limit: int, before: int | None = None
) -> list[AssessmentRow]:
    """Assessments of the session, newest first, with ids below `before`."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM assessments WHERE session_id = $1"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        session_id,
        before,
        limit,
    )
    return [_row(r) for r in rows]


async def user_assessments(
    db: Executor,
    user_id: str,
    *,
    limit: int,
    session_id: str | None = None,
    focus_id: str | None = None,
) -> list[AssessmentRow]:
    """The user's assessments, newest first, optionally of one session or focus: keyed by the
    user, so another user's session id finds nothing."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM assessments WHERE user_id = $1"
        " AND ($2::text IS NULL OR session_id = $2) AND ($3::text IS NULL OR focus_id = $3)"
        " ORDER BY created_at DESC, id DESC LIMIT $4",
        user_id,
        session_id,
        focus_id,
        limit,
    )
    return [_row(r) for r in rows]


async def assessments_for_job(db: Executor, job_id: int) -> list[AssessmentRow]:
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM assessments WHERE job_id = $1 ORDER BY id", job_id
    )
    return [_row(r) for r in rows]


async def progress_scores(
    db: Executor, user_id: str, *, per_focus: int = 20
) -> dict[str, list[int]]:
    """The last `per_focus` progress scores of each focus of the user, oldest first."""
    rows = await db.fetch(
        "SELECT focus_id, score FROM ("
        "  SELECT focus_id, score, id, row_number() OVER"
        "   (PARTITION BY focus_id ORDER BY created_at DESC, id DESC) AS n"
        "  FROM assessments WHERE user_id = $1 AND category = 'progress' AND score IS NOT NULL"
        " ) recent WHERE n <= $2 ORDER BY focus_id, id",
        user_id,
        per_focus,
    )
    scores: dict[str, list[int]] = {}
    for r in rows:
        scores.setdefault(r["focus_id"], []).append(int(r["score"]))
    return scores
