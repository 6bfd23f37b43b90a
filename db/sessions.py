"""`users` and `sessions`: the coaching session is the conversation, not the connection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from db.pool import Connection, Executor, Pool

__all__ = [
    "ClosedSession",
    "OpenedSession",
    "SessionRow",
    "close_idle_sessions",
    "end_session",
    "get_session",
    "list_sessions",
    "open_session",
    "queue_summary",
    "touch_session",
]

_COLUMNS = (
    "s.id, s.user_id, s.opened_at, s.last_active_at, s.closed_at,"
    " (SELECT count(*) FROM interactions i WHERE i.session_id = s.id) AS interaction_count,"
    " (SELECT j.status FROM assessment_jobs j WHERE j.session_id = s.id"
    "   AND j.kind = 'session_summary' ORDER BY j.id DESC LIMIT 1) AS summary_status"
)


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    user_id: str
    opened_at: datetime
    last_active_at: datetime
    closed_at: datetime | None
    interaction_count: int
    summary_status: str | None  # of the latest session_summary job; None before the close


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A session closed for idleness, and the summary job queued for it."""

    session_id: str
    user_id: str
    job_id: int


@dataclass(frozen=True, slots=True)
class OpenedSession:
    session: SessionRow
    resumed: bool
    closed: list[ClosedSession]  # the caller's sessions that went idle, closed on the way


async def open_session(
    pool: Pool, user_id: str, session_id: str | None, *, idle_s: float
) -> OpenedSession:
    """Resume `session_id` (the caller's, else `LookupError`), or the caller's session active
    within `idle_s`, or open a new one. The caller's idle sessions are closed on the way."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO users (id) VALUES ($1)"
            " ON CONFLICT (id) DO UPDATE SET last_seen_at = now()",
            user_id,
        )
        if session_id is not None:
            found = await _resume(conn, user_id, session_id)
            if found is None:
                raise LookupError(f"no session {session_id!r} for this user")
            return OpenedSession(await _get(conn, found), True, [])
        jobs = await _close_idle(conn, idle_s, user_id)
        recent = await conn.fetchval(
            "UPDATE sessions SET last_active_at = clock_timestamp() WHERE id = ("
            " SELECT id FROM sessions WHERE user_id = $1 AND closed_at IS NULL"
            " ORDER BY last_active_at DESC LIMIT 1) RETURNING id",
            user_id,
        )
        if recent is not None:
            return OpenedSession(await _get(conn, recent), True, jobs)
        new_id = await conn.fetchval(
            "INSERT INTO sessions (user_id) VALUES ($1) RETURNING id", user_id
        )
        return OpenedSession(await _get(conn, new_id), False, jobs)


async def _resume(conn: Connection, user_id: str, session_id: str) -> str | None:
    # A session closed for idleness reopens: a reconnecting client keeps its context.
    found = await conn.fetchval(
        "UPDATE sessions SET last_active_at = clock_timestamp(), closed_at = NULL"
        " WHERE id = $1 AND user_id = $2 RETURNING id",
        session_id,
        user_id,
    )
    return None if found is None else str(found)


async def _get(conn: Connection, session_id: str) -> SessionRow:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM sessions s WHERE s.id = $1", session_id)
    assert row is not None
    return SessionRow(**dict(row))


async def touch_session(db: Executor, session_id: str) -> None:
    """Note activity, which keeps the session open."""
    await db.execute(
        "UPDATE sessions SET last_active_at = clock_timestamp() WHERE id = $1", session_id
    )


async def close_idle_sessions(pool: Pool, idle_s: float) -> list[ClosedSession]:
    """Close every session idle for `idle_s` (each by exactly one caller, however many run
    this at once) and queue its summary job."""
    async with pool.acquire() as conn, conn.transaction():
        return await _close_idle(conn, idle_s, None)


async def end_session(pool: Pool, user_id: str, session_id: str) -> int | None:
    """Close the user's session now, as the idle closer would, and queue its summary job; the
    job's id, or None when the session was not open (closed already, or not the user's)."""
    async with pool.acquire() as conn, conn.transaction():
        closed = await conn.fetchval(
            "UPDATE sessions SET closed_at = clock_timestamp()"
            " WHERE id = $1 AND user_id = $2 AND closed_at IS NULL RETURNING id",
            session_id,
            user_id,
        )
        if closed is None:
            return None
        return await queue_summary(conn, user_id, session_id)


async def queue_summary(db: Executor, user_id: str, session_id: str) -> int:
    """Queue a session summary job for the session (closed or not); its id."""
    job_id = await db.fetchval(
        "INSERT INTO assessment_jobs (kind, scope, user_id, session_id)"
        " VALUES ('session_summary', 'session_summary', $1, $2) RETURNING id",
        user_id,
        session_id,
    )
    return int(job_id)


async def _close_idle(conn: Connection, idle_s: float, user_id: str | None) -> list[ClosedSession]:
    rows = await conn.fetch(
        "WITH closed AS ("
        "  UPDATE sessions SET closed_at = clock_timestamp()"
        "  WHERE closed_at IS NULL"
        "    AND last_active_at < clock_timestamp() - make_interval(secs => $1)"
        "    AND ($2::text IS NULL OR user_id = $2)"
        "  RETURNING id, user_id)"
        " INSERT INTO assessment_jobs (kind, scope, user_id, session_id)"
        " SELECT 'session_summary', 'session_summary', user_id, id FROM closed"
        " RETURNING id, user_id, session_id",
        idle_s,
        user_id,
    )
    return [ClosedSession(str(r["session_id"]), str(r["user_id"]), int(r["id"])) for r in rows]


async def get_session(db: Executor, user_id: str, session_id: str) -> SessionRow | None:
    """The session if it is the user's, else None (another user's session does not exist)."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM sessions s WHERE s.id = $1 AND s.user_id = $2",
        session_id,
        user_id,
    )
    return None if row is None else SessionRow(**dict(row))


async def list_sessions(
    db: Executor, user_id: str, *, limit: int, before: tuple[datetime, str] | None = None
) -> list[SessionRow]:
    """The user's sessions, newest first, older than the `(opened_at, id)` cursor."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM sessions s WHERE s.user_id = $1"
        " AND ($2::timestamptz IS NULL OR (s.opened_at, s.id) < ($2, $3))"
        " ORDER BY s.opened_at DESC, s.id DESC LIMIT $4",
        user_id,
        None if before is None else before[0],
        None if before is None else before[1],
        limit,
    )
    return [SessionRow(**dict(r)) for r in rows]
