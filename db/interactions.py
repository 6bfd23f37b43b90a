"""`interactions`: one row per finished turn, written with its prompt run and its outbox job."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from db import jobs
from db.pool import DATABASE_ERRORS, Connection, Executor, Pool
from db.prompt_runs import COLUMNS as RUN_COLUMNS
from db.prompt_runs import NewPromptRun

__all__ = [
    "BufferDecision",
    "InteractionRow",
    "JobTurn",
    "NewInteraction",
    "TurnWrite",
    "buffer_if_room",
    "buffer_lock",
    "claim_group",
    "claim_job_with_turn",
    "get_interaction",
    "interactions_by_ids",
    "job_turn",
    "list_interactions",
    "recent_exchanges",
    "recent_interactions",
    "record_turn",
    "record_turns",
]


@dataclass(frozen=True, slots=True)
class NewInteraction:
    """The columns a finished turn writes, each field named as its column: the one list of
    them. The INSERT is built from these fields, `InteractionRow` adds the columns the database
    fills in, and the gateway takes each from the `TurnRecord` field of the same name."""

    session_id: str
    user_id: str
    turn_id: str
    request_id: str
    channel: str
    user_text: str
    reply_text: str
    status: str
    finish_reason: str
    total_ms: float
    error_code: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_ms: float | None = None
    upstream_ttft_ms: float | None = None
    first_audio_ms: float | None = None
    audio_in_ms: int = 0
    provider: str | None = None
    model: str | None = None
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    focus_ids: tuple[str, ...] = ()
    # Why the guardrails answered this turn with the safety text ("injury" | "self_harm").
    safety_flag: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InteractionRow(NewInteraction):
    """A stored interaction: what its turn wrote, and the columns the database filled in."""

    id: int
    assess_state: str
    assess_job_id: int | None
    created_at: datetime


_WRITTEN = tuple(f.name for f in fields(NewInteraction))
_INSERT = (
    f"INSERT INTO interactions ({', '.join(_WRITTEN)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(_WRITTEN) + 1))})"
    " ON CONFLICT (request_id) WHERE request_id <> '' DO NOTHING RETURNING id"
)
_COLUMNS = ", ".join(f.name for f in fields(InteractionRow))
_RUN_PARAMS = ", ".join(
    f"${n}" for n in range(len(_WRITTEN) + 1, len(_WRITTEN) + len(RUN_COLUMNS) + 1)
)
_ENQUEUE = f"${len(_WRITTEN) + len(RUN_COLUMNS) + 1}"
_SESSION, _USER = f"${_WRITTEN.index('session_id') + 1}", f"${_WRITTEN.index('user_id') + 1}"
# A finished turn in ONE statement (one round trip, atomic by itself): the interaction, then,
# only if it was new, its prompt run, the session's activity and its outbox job. Each of those
# was a round trip of its own, with BEGIN and COMMIT two more: under load they were most of
# what storage cost the gateway's loop.
_RECORD = (
    f"WITH i AS ({_INSERT}),"
    f" r AS (INSERT INTO prompt_runs ({', '.join(RUN_COLUMNS)}) SELECT {_RUN_PARAMS} FROM i),"
    " s AS (UPDATE sessions SET last_active_at = clock_timestamp()"
    f"  WHERE id = {_SESSION} AND EXISTS (SELECT 1 FROM i)),"
    " j AS (INSERT INTO assessment_jobs (kind, user_id, session_id, interaction_id)"
    f"  SELECT 'turn', {_USER}, {_SESSION}, id FROM i WHERE {_ENQUEUE}::boolean RETURNING id)"
    " SELECT (SELECT id FROM i) AS interaction_id, (SELECT id FROM j) AS job_id"
)


@dataclass(frozen=True, slots=True)
class TurnWrite:
    interaction_id: int | None  # None: this request id was already recorded
    job_id: int | None


def _row(record: Any) -> InteractionRow:
    return InteractionRow(**{**dict(record), "focus_ids": tuple(record["focus_ids"])})


async def record_turn(
    db: Executor, turn: NewInteraction, run: NewPromptRun, *, enqueue: bool
) -> TurnWrite:
    """In ONE statement (so in one transaction, and one round trip): the interaction, its prompt
    run, a `turn` assessment job (outbox) when `enqueue`, and the session's activity. A request
    id seen before writes nothing."""
    return await _record(db, turn, run, enqueue=enqueue)


async def record_turns(
    pool: Pool, turns: Sequence[tuple[NewInteraction, NewPromptRun]], *, enqueue: bool
) -> list[TurnWrite]:
    """`record_turn` for several turns, in order, in ONE transaction (one commit for a batch
    drained from the spool)."""
    async with pool.acquire() as conn, conn.transaction():
        return [await _record(conn, turn, run, enqueue=enqueue) for turn, run in turns]


async def _record(
    db: Executor, turn: NewInteraction, run: NewPromptRun, *, enqueue: bool
) -> TurnWrite:
    assess = enqueue and turn.safety_flag is None  # a safety answer is no coaching to assess
    row = await db.fetchrow(
        _RECORD,
        *(getattr(turn, column) for column in _WRITTEN),
        *(getattr(run, column) for column in RUN_COLUMNS),
        assess,
    )
    interaction_id, job_id = row["interaction_id"], row["job_id"]
    if interaction_id is None:
        return TurnWrite(None, None)
    return TurnWrite(int(interaction_id), None if job_id is None else int(job_id))


async def get_interaction(db: Executor, interaction_id: int) -> InteractionRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM interactions WHERE id = $1", interaction_id)
    return None if row is None else _row(row)


@dataclass(frozen=True, slots=True)
class JobTurn:
    """A turn job's interaction (None if it is gone), and the interactions the job has already
    taken (a re-run after a crash reuses them)."""

    turn: InteractionRow | None
    taken: list[int]


_TURN_AND_TAKEN = (
    f"{', '.join(f'i.{f.name} AS t_{f.name}' for f in fields(InteractionRow))},"
    " ARRAY(SELECT t.id FROM interactions t WHERE t.assess_job_id = c.id ORDER BY t.id) AS taken"
)
# The claim and the claimed job's turn in one round trip.
_CLAIM_WITH_TURN = (
    f"WITH c AS ({jobs.CLAIM})"
    f" SELECT {', '.join(f'c.{name}' for name in jobs.JOB_COLUMNS)}, {_TURN_AND_TAKEN}"
    " FROM c LEFT JOIN interactions i ON i.id = c.interaction_id"
)


def _job_turn(record: Any) -> JobTurn:
    taken = [int(i) for i in record["taken"]]
    if record["t_id"] is None:
        return JobTurn(None, taken)
    return JobTurn(_row({k[2:]: v for k, v in record.items() if k.startswith("t_")}), taken)


async def claim_job_with_turn(
    db: Executor, *, lease_s: float, max_attempts: int, job_id: int | None = None
) -> tuple[jobs.JobRow, JobTurn] | None:
    """`db.jobs.claim_job`, and in the same round trip the claimed job's `JobTurn` (for a
    summary job, which has no turn: none, and what it has taken)."""
    row = await db.fetchrow(_CLAIM_WITH_TURN, lease_s, max_attempts, job_id)
    if row is None:
        return None
    job = jobs.JobRow(**{name: row[name] for name in jobs.JOB_COLUMNS})
    return job, _job_turn(row)


async def job_turn(db: Executor, job_id: int, interaction_id: int) -> JobTurn:
    """A turn job's `JobTurn`, in one round trip."""
    row = await db.fetchrow(
        f"SELECT {_TURN_AND_TAKEN}"
        " FROM (SELECT $1::bigint AS id) c LEFT JOIN interactions i ON i.id = $2",
        job_id,
        interaction_id,
    )
    return _job_turn(row)


async def interactions_by_ids(db: Executor, ids: Sequence[int]) -> list[InteractionRow]:
    """The rows of `ids`, oldest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM interactions WHERE id = ANY($1::bigint[]) ORDER BY id", list(ids)
    )
    return [_row(r) for r in rows]


async def recent_interactions(db: Executor, session_id: str, limit: int) -> list[InteractionRow]:
    """The last `limit` interactions of the session, oldest first."""
    rows = await db.fetch(
        f"SELECT * FROM (SELECT {_COLUMNS} FROM interactions WHERE session_id = $1"
        " ORDER BY id DESC LIMIT $2) recent ORDER BY id",
        session_id,
        limit,
    )
    return [_row(r) for r in rows]


async def recent_exchanges(db: Executor, session_id: str, limit: int) -> list[tuple[str, str]]:
    """The (user text, reply) of the session's last `limit` interactions, oldest first: a
    resumed session's history, without the columns it does not need."""
    rows = await db.fetch(
        "SELECT user_text, reply_text FROM (SELECT id, user_text, reply_text FROM interactions"
        " WHERE session_id = $1 ORDER BY id DESC LIMIT $2) recent ORDER BY id",
        session_id,
        limit,
    )
    return [(r["user_text"], r["reply_text"]) for r in rows]


async def list_interactions(
    db: Executor, session_id: str, *, limit: int, before: int | None = None
) -> list[InteractionRow]:
    """Interactions of the session, newest first, with ids below `before`."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM interactions WHERE session_id = $1"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        session_id,
        before,
        limit,
    )
    return [_row(r) for r in rows]


# The first key of the advisory locks on a session's multi-turn buffer (the second: its id's).
_BUFFER_LOCK_CLASS = 0x636F


def _buffer_lock_key(session_id: str) -> int:
    """The second key: the session id's CRC-32 as a signed 32-bit integer."""
    return zlib.crc32(session_id.encode()) - 2**31


@asynccontextmanager
async def buffer_lock(pool: Pool, session_id: str) -> AsyncIterator[Connection]:
    """A connection in a transaction holding the session's multi-turn buffer until it ends: jobs
    of one session count, add to and take from the buffer one at a time. Committed when the
    block ends, rolled back when it raises."""
    key = _buffer_lock_key(session_id)
    async with pool.acquire() as conn:
        # BEGIN and the lock in one round trip: the simple query protocol runs both, and both
        # keys are integers made here, so nothing from outside is spliced into the text.
        await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_BUFFER_LOCK_CLASS}, {key})")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(*DATABASE_ERRORS):  # a lost connection ends it anyway
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class BufferDecision:
    others: int  # the session's other turns waiting in the buffer
    buffered: bool  # this turn joined them, its job finished
    lost: bool  # it would have, but the attempt no longer held the job


async def buffer_if_room(
    db: Executor, job_id: int, attempt: int, turn: InteractionRow, *, room: int
) -> BufferDecision:
    """Under the session's `buffer_lock`, in one statement: count the session's other buffered
    turns and, when fewer than `room` wait, put `turn` among them and finish its job (scope
    `buffer`), only if this attempt still holds it."""
    row = await db.fetchrow(
        "WITH n AS (SELECT count(*) AS others FROM interactions WHERE session_id = $4"
        "  AND assess_state = 'buffered' AND assess_job_id IS NULL AND id <> $3),"
        " done AS (UPDATE assessment_jobs SET status = 'done', scope = 'buffer',"
        "  lease_until = NULL, last_error = NULL, updated_at = now()"
        "  WHERE id = $1 AND attempts = $2 AND status = 'running'"
        "  AND (SELECT others FROM n) < $5 RETURNING id),"
        " marked AS (UPDATE interactions SET assess_state = 'buffered'"
        "  WHERE id = $3 AND assess_job_id IS NULL AND EXISTS (SELECT 1 FROM done))"
        " SELECT (SELECT others FROM n) AS others, (SELECT id FROM done) AS done",
        job_id,
        attempt,
        turn.id,
        turn.session_id,
        room,
    )
    others, done = int(row["others"]), row["done"] is not None
    return BufferDecision(others, done, others < room and not done)


async def claim_group(
    db: Executor, job_id: int, interaction_id: int, max_turns: int
) -> list[InteractionRow]:
    """Give `job_id` this interaction and up to `max_turns - 1` buffered ones of its session
    (the most recent); return the rows taken, oldest first. Rows another job holds are skipped."""
    rows = await db.fetch(
        "UPDATE interactions SET assess_state = 'claimed', assess_job_id = $1"
        " WHERE id IN (SELECT id FROM interactions WHERE"
        "   (id = $2 OR (assess_state = 'buffered' AND session_id ="
        "     (SELECT session_id FROM interactions WHERE id = $2)))"
        "   AND assess_job_id IS NULL ORDER BY id = $2 DESC, id DESC LIMIT $3"
        "   FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_COLUMNS}",
        job_id,
        interaction_id,
        max_turns,
    )
    return sorted((_row(r) for r in rows), key=lambda row: row.id)
