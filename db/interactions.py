"""`interactions`: one row per finished turn, written with its prompt run and its outbox job."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from db.pool import Connection, Executor, Pool
from db.prompt_runs import COLUMNS as RUN_COLUMNS
from db.prompt_runs import NewPromptRun

__all__ = [
    "InteractionRow",
    "NewInteraction",
    "TurnWrite",
    "buffer_lock",
    "buffered_count",
    "claim_group",
    "get_interaction",
    "interactions_by_ids",
    "job_group",
    "job_turn",
    "list_interactions",
    "recent_exchanges",
    "recent_interactions",
    "record_turn",
    "record_turns",
    "set_assess_state",
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


async def job_turn(
    db: Executor, job_id: int, interaction_id: int
) -> tuple[InteractionRow | None, list[int]]:
    """A turn job's interaction, and the interactions the job has already taken (a re-run after a
    crash reuses them), in one round trip."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS}, ARRAY(SELECT t.id FROM interactions t"
        "  WHERE t.assess_job_id = $1 ORDER BY t.id) AS taken"
        " FROM (SELECT 1) one LEFT JOIN interactions ON id = $2",
        job_id,
        interaction_id,
    )
    taken = [int(i) for i in row["taken"]]
    if row["id"] is None:
        return None, taken
    return _row({k: v for k, v in row.items() if k != "taken"}), taken


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


# The first key of the advisory locks on a session's multi-turn buffer (the second: its id).
_BUFFER_LOCK_CLASS = 0x636F


@asynccontextmanager
async def buffer_lock(pool: Pool, session_id: str) -> AsyncIterator[Connection]:
    """A connection in a transaction holding the session's multi-turn buffer until it ends: jobs
    of one session count, add to and take from the buffer one at a time."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _BUFFER_LOCK_CLASS, session_id
        )
        yield conn


async def buffered_count(db: Executor, session_id: str, *, exclude: int | None = None) -> int:
    """How many interactions of the session (other than `exclude`) wait in the multi-turn
    buffer, not yet taken by a job."""
    n = await db.fetchval(
        "SELECT count(*) FROM interactions WHERE session_id = $1 AND assess_state = 'buffered'"
        " AND assess_job_id IS NULL AND id IS DISTINCT FROM $2",
        session_id,
        exclude,
    )
    return int(n)


async def set_assess_state(db: Executor, interaction_id: int, state: str) -> None:
    await db.execute(
        "UPDATE interactions SET assess_state = $2 WHERE id = $1", interaction_id, state
    )


async def job_group(db: Executor, job_id: int) -> list[int]:
    """The interactions a job has already taken (a re-run after a crash reuses them)."""
    rows = await db.fetch(
        "SELECT id FROM interactions WHERE assess_job_id = $1 ORDER BY id", job_id
    )
    return [int(r["id"]) for r in rows]


async def claim_group(db: Executor, job_id: int, interaction_id: int, max_turns: int) -> list[int]:
    """Give `job_id` this interaction and up to `max_turns - 1` buffered ones of its session
    (the most recent); return the ids taken, oldest first. Rows another job holds are skipped."""
    rows = await db.fetch(
        "UPDATE interactions SET assess_state = 'claimed', assess_job_id = $1"
        " WHERE id IN (SELECT id FROM interactions WHERE"
        "   (id = $2 OR (assess_state = 'buffered' AND session_id ="
        "     (SELECT session_id FROM interactions WHERE id = $2)))"
        "   AND assess_job_id IS NULL ORDER BY id = $2 DESC, id DESC LIMIT $3"
        "   FOR UPDATE SKIP LOCKED)"
        " RETURNING id",
        job_id,
        interaction_id,
        max_turns,
    )
    return sorted(int(r["id"]) for r in rows)
