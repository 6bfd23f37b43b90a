"""`assessments`: per-focus rows written by a job, unique per (job, focus)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from db.pool import Executor
from db.prompt_runs import COLUMNS as RUN_COLUMNS
from db.prompt_runs import NewPromptRun

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


# One jsonb array carries the rows (array columns of different lengths cannot travel as
# parallel unnest() arrays).
_ROWS = (
    "user_id text, session_id text, interaction_ids jsonb, focus_id text, kind text,"
    " category text, score int, explanation text, errors jsonb, tags jsonb, group_id uuid,"
    " rubric_version text, n int"
)
_RUN_PARAMS = ", ".join(f"${n}" for n in range(6, len(RUN_COLUMNS) + 6))
# A job's result in ONE statement (one round trip, atomic by itself): the job marked done, only
# if this attempt still holds it, and only then its rows, its turns marked assessed and its
# prompt run. The last SELECT gives one row even when nothing was inserted: `held` says whether
# the job was still this attempt's.
_STORE = (
    "WITH done AS (UPDATE assessment_jobs SET status = 'done', scope = $3, lease_until = NULL,"
    "  last_error = NULL, updated_at = now()"
    "  WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING id),"
    " ins AS (INSERT INTO assessments (job_id, user_id, session_id, interaction_ids, focus_id,"
    "  kind, category, score, explanation, errors, tags, group_id, rubric_version)"
    "  SELECT done.id, r.user_id, r.session_id,"
    "   ARRAY(SELECT jsonb_array_elements_text(r.interaction_ids)::bigint), r.focus_id, r.kind,"
    "   r.category, r.score, r.explanation, r.errors,"
    "   ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.group_id, r.rubric_version"
    f"  FROM done, jsonb_to_recordset($4::jsonb) AS r({_ROWS}) ORDER BY r.n"
    f"  ON CONFLICT ON CONSTRAINT assessments_job_focus DO NOTHING RETURNING {_COLUMNS}),"
    " marked AS (UPDATE interactions SET assess_state = 'assessed', assess_job_id = $1"
    "  WHERE id = ANY($5::bigint[]) AND EXISTS (SELECT 1 FROM done)),"
    f" run AS (INSERT INTO prompt_runs ({', '.join(RUN_COLUMNS)}) SELECT {_RUN_PARAMS} FROM done"
    f"  WHERE ${len(RUN_COLUMNS) + 6}::boolean)"
    " SELECT (SELECT id FROM done) AS held, ins.* FROM (SELECT 1) one LEFT JOIN ins ON true"
    " ORDER BY ins.id"
)


async def store_job_result(
    db: Executor,
    *,
    job_id: int,
    attempt: int,
    scope: str,
    rows: Sequence[NewAssessment],
    interaction_ids: Sequence[int],
    run: NewPromptRun | None,
) -> list[AssessmentRow] | None:
    """In ONE statement: mark the job done (only if `attempt` still holds it), insert its rows
    (a row already there for the same job and focus is kept, not doubled), mark the interactions
    assessed, record the prompt run. Returns the rows inserted, or None if the lease was lost."""
    records = await db.fetch(
        _STORE,
        job_id,
        attempt,
        scope,
        [_as_json(a, n) for n, a in enumerate(rows)],
        list(interaction_ids),
        *(None if run is None else getattr(run, column) for column in RUN_COLUMNS),
        run is not None,
    )
    if records[0]["held"] is None:
        return None
    return [_row({k: v for k, v in r.items() if k != "held"}) for r in records if r["id"]]


def _as_json(row: NewAssessment, n: int) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "session_id": row.session_id,
        "interaction_ids": list(row.interaction_ids),
        "focus_id": row.focus_id,
        "kind": row.kind,
        "category": row.category,
        "score": row.score,
        "explanation": row.explanation,
        "errors": row.errors,
        "tags": list(row.tags),
        "group_id": None if row.group_id is None else str(row.group_id),
        "rubric_version": row.rubric_version,
        "n": n,
    }


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
