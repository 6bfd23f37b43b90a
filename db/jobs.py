"""`assessment_jobs`: the outbox. Workers claim a job with a short lease (`FOR UPDATE SKIP
LOCKED`) and renew it while the job runs; the attempt number doubles as a fencing token, so a
worker whose lease ran out (and whose job someone else re-claimed) can neither renew nor finish
it any more."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from db.pool import Executor

__all__ = [
    "CLAIM",
    "JOB_COLUMNS",
    "JobRow",
    "claim_job",
    "claimable_job_ids",
    "complete_job",
    "fail_exhausted_jobs",
    "fail_job",
    "finish_unassessed",
    "get_job",
    "job_counts",
    "release_jobs",
    "renew_leases",
    "request_turn_job",
    "retry_job_later",
]

_COLUMNS = (
    "id, kind, scope, user_id, session_id, interaction_id, status, attempts, lease_until,"
    " last_error, created_at, updated_at"
)
# A job is up for grabs when pending and due, or running with a lease that ran out (crash).
_CLAIMABLE = (
    "((status = 'pending' AND run_after <= now())"
    " OR (status = 'running' AND lease_until < now())) AND attempts < $2"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    kind: str
    scope: str | None
    user_id: str
    session_id: str
    interaction_id: int | None
    status: str
    attempts: int
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


# Claims `$3`, or the oldest claimable job when it is NULL, under a lease of `$1` seconds.
CLAIM = (
    "UPDATE assessment_jobs SET status = 'running', attempts = attempts + 1,"
    " lease_until = now() + make_interval(secs => $1), updated_at = now()"
    " WHERE id = (SELECT id FROM assessment_jobs"
    f"  WHERE {_CLAIMABLE} AND ($3::bigint IS NULL OR id = $3)"
    "  ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)"
    f" RETURNING {_COLUMNS}"
)
JOB_COLUMNS = tuple(c.strip() for c in _COLUMNS.split(","))


async def claim_job(
    db: Executor, *, lease_s: float, max_attempts: int, job_id: int | None = None
) -> JobRow | None:
    """Claim `job_id`, or the oldest claimable job when None; None if there is nothing to take."""
    row = await db.fetchrow(CLAIM, lease_s, max_attempts, job_id)
    return None if row is None else JobRow(**dict(row))


async def request_turn_job(
    db: Executor, user_id: str, session_id: str, turn_id: str | None
) -> int | None:
    """Queue a job that assesses the session's latest completed turn (or the one with
    `turn_id`) whatever the filter would say: its scope is set to `interaction` from the start,
    which `assess.work` takes as asked for. The job's id, or None when there is no such turn."""
    job_id = await db.fetchval(
        "INSERT INTO assessment_jobs (kind, scope, user_id, session_id, interaction_id)"
        " SELECT 'turn', 'interaction', user_id, session_id, id FROM interactions"
        " WHERE session_id = $1 AND user_id = $2 AND status = 'completed'"
        "   AND ($3::text IS NULL OR turn_id = $3)"
        " ORDER BY id DESC LIMIT 1 RETURNING id",
        session_id,
        user_id,
        turn_id,
    )
    return None if job_id is None else int(job_id)


async def renew_leases(db: Executor, claims: Sequence[tuple[int, int]], lease_s: float) -> set[int]:
    """Push the leases of `(job id, attempt)` claims `lease_s` ahead, in one statement, where
    that attempt still holds the job and it is running (a lease that ran out is still held
    until another attempt claims the job); the ids renewed. A job missing from them was taken
    over or has ended, or its row was locked by another transaction: skipped, not waited for."""
    rows = await db.fetch(
        "UPDATE assessment_jobs j SET lease_until = now() + make_interval(secs => $3)"
        " FROM unnest($1::bigint[], $2::int[]) AS c(id, attempt)"
        " WHERE j.id = c.id AND j.attempts = c.attempt AND j.status = 'running'"
        "  AND j.id IN (SELECT id FROM assessment_jobs WHERE id = ANY($1::bigint[])"
        "   FOR UPDATE SKIP LOCKED)"
        " RETURNING j.id",
        [c[0] for c in claims],
        [c[1] for c in claims],
        lease_s,
    )
    return {int(r["id"]) for r in rows}


async def claimable_job_ids(
    db: Executor, *, limit: int, max_attempts: int, exclude: Collection[int] = ()
) -> list[int]:
    """Ids of claimable jobs, oldest first (a hint: claiming them may still lose a race)."""
    rows = await db.fetch(
        "SELECT id FROM assessment_jobs"
        f" WHERE {_CLAIMABLE} AND NOT (id = ANY($1::bigint[])) ORDER BY id LIMIT $3",
        list(exclude),
        max_attempts,
        limit,
    )
    return [int(r["id"]) for r in rows]


async def get_job(db: Executor, job_id: int) -> JobRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM assessment_jobs WHERE id = $1", job_id)
    return None if row is None else JobRow(**dict(row))


async def complete_job(db: Executor, job_id: int, attempt: int, scope: str) -> bool:
    """Mark the job done if this attempt still holds it; False means the lease was lost."""
    done = await db.fetchval(
        "UPDATE assessment_jobs SET status = 'done', scope = $3, lease_until = NULL,"
        " last_error = NULL, updated_at = now()"
        " WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING id",
        job_id,
        attempt,
        scope,
    )
    return done is not None


async def finish_unassessed(
    db: Executor,
    job_id: int,
    attempt: int,
    scope: str,
    *,
    interaction_id: int | None = None,
    state: str | None = None,
) -> bool:
    """Done with no model call (filtered out, or buffered), and with `interaction_id` that
    interaction's `state`, both in one statement (and only if this attempt still held the job).
    False means the lease was lost."""
    done = await db.fetchval(
        "WITH done AS (UPDATE assessment_jobs SET status = 'done', scope = $3,"
        "  lease_until = NULL, last_error = NULL, updated_at = now()"
        "  WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING id),"
        " marked AS (UPDATE interactions SET assess_state = $5"
        "  WHERE id = $4 AND $5::text IS NOT NULL AND assess_job_id IS NULL"
        "  AND EXISTS (SELECT 1 FROM done))"
        " SELECT id FROM done",
        job_id,
        attempt,
        scope,
        interaction_id,
        state,
    )
    return done is not None


async def fail_job(db: Executor, job_id: int, attempt: int, error: str) -> bool:
    """Give up on the job for good (e.g. the model's answer stayed invalid)."""
    done = await db.fetchval(
        "UPDATE assessment_jobs SET status = 'failed', last_error = $3, lease_until = NULL,"
        " updated_at = now() WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING id",
        job_id,
        attempt,
        error[:2000],
    )
    return done is not None


async def retry_job_later(
    db: Executor, job_id: int, attempt: int, error: str, delay_s: float
) -> bool:
    """Put the job back, due after `delay_s` (e.g. no provider answered)."""
    done = await db.fetchval(
        "UPDATE assessment_jobs SET status = 'pending', last_error = $3, lease_until = NULL,"
        " run_after = now() + make_interval(secs => $4), updated_at = now()"
        " WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING id",
        job_id,
        attempt,
        error[:2000],
        delay_s,
    )
    return done is not None


async def release_jobs(db: Executor, claims: Sequence[tuple[int, int]]) -> int:
    """Hand unfinished `(job id, attempt)` claims back (shutdown): pending, due now, the attempt
    not counted."""
    if not claims:
        return 0
    rows = await db.fetch(
        "UPDATE assessment_jobs j SET status = 'pending', lease_until = NULL,"
        " attempts = j.attempts - 1, run_after = now(), updated_at = now()"
        " FROM unnest($1::bigint[], $2::int[]) AS c(id, attempt)"
        " WHERE j.id = c.id AND j.attempts = c.attempt AND j.status = 'running' RETURNING j.id",
        [c[0] for c in claims],
        [c[1] for c in claims],
    )
    return len(rows)


async def fail_exhausted_jobs(db: Executor, *, max_attempts: int) -> int:
    """Fail jobs whose every attempt crashed or ran out of its lease."""
    rows = await db.fetch(
        "UPDATE assessment_jobs SET status = 'failed', lease_until = NULL, updated_at = now(),"
        " last_error = coalesce(last_error, 'lease expired') || ' (attempts exhausted)'"
        " WHERE attempts >= $1 AND (status = 'pending'"
        "   OR (status = 'running' AND lease_until < now())) RETURNING id",
        max_attempts,
    )
    return len(rows)


async def job_counts(db: Executor) -> dict[str, int]:
    """How many jobs are in each status."""
    rows = await db.fetch("SELECT status, count(*) AS n FROM assessment_jobs GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}
