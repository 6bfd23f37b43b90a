"""Confirm-before-write: the agent proposes a change, the user accepts or rejects it.

A proposal (`propose_focus_change`, `propose_memory`) is checked as the direct write would be
and stored as a pending change; nothing else is written. `accept_change` applies it once, in
the same transaction that moves it from pending to applied (`db.changes.decide_change`), so a
change accepted twice, or from two connections at once, is applied once: the second gets
`ChangeConflict`. An unknown, foreign or expired change is `ChangeNotFound`. The HTTP routes
(`gateway.agent_routes`) and the WebSocket's `change.accept` / `change.reject` both come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from db.changes import ChangeConflict, ChangeNotFound, ChangeRow, create_change, decide_change
from db.focuses import MAX_ACTIVE, active_focuses, list_focuses, write_active_focuses
from db.memories import add_memory
from db.pool import DATABASE_UNAVAILABLE, Connection, Executor, Pool
from gateway.errors import ApiError

__all__ = [
    "MAX_MEMORY_CHARS",
    "ChangeConflict",
    "ChangeInvalid",
    "ChangeNotFound",
    "accept_change",
    "answer_change",
    "focus_choice_problem",
    "propose_focus_change",
    "propose_memory",
    "reject_change",
]

MAX_MEMORY_CHARS = 500
MAX_REASON_CHARS = 300


class ChangeInvalid(ValueError):
    """A proposal (or a change at the moment it is applied) that the direct write would refuse;
    the message says why."""


def focus_choice_problem(focus_ids: Sequence[str], known: frozenset[str]) -> str | None:
    """Why `focus_ids` cannot be a user's active focuses (as `PUT /v1/progress/focuses` would
    refuse them), or None."""
    if len(focus_ids) > MAX_ACTIVE or len(set(focus_ids)) != len(focus_ids):
        return f"focus_ids must hold at most {MAX_ACTIVE} distinct focus ids"
    unknown = [f for f in focus_ids if f not in known]
    if unknown:
        return f"unknown focus {', '.join(unknown)}; known: {', '.join(sorted(known))}"
    return None


async def propose_focus_change(
    pool: Pool,
    user_id: str,
    session_id: str | None,
    focus_ids: Sequence[str],
    *,
    ttl_s: float,
    reason: str = "",
) -> ChangeRow:
    """A pending change of the user's active focuses to `focus_ids` (in order); its payload
    also names the focuses it would replace. `ChangeInvalid` when the choice is not valid."""
    problem = focus_choice_problem(focus_ids, await _known_focuses(pool))
    if problem:
        raise ChangeInvalid(problem)
    current = [f.id for f in await active_focuses(pool, user_id)]
    payload: dict[str, Any] = {"focus_ids": list(focus_ids), "previous_focus_ids": current}
    if reason.strip():
        payload["reason"] = reason.strip()[:MAX_REASON_CHARS]
    return await create_change(pool, user_id, session_id, "focus_change", payload, ttl_s=ttl_s)


async def propose_memory(
    pool: Pool, user_id: str, session_id: str | None, text: str, *, ttl_s: float
) -> ChangeRow:
    """A pending memory of `text` for the user. `ChangeInvalid` when it is empty or too long."""
    text = text.strip()
    if not text or len(text) > MAX_MEMORY_CHARS:
        raise ChangeInvalid(f"text must be 1-{MAX_MEMORY_CHARS} characters")
    return await create_change(pool, user_id, session_id, "memory", {"text": text}, ttl_s=ttl_s)


async def accept_change(pool: Pool, user_id: str, change_id: str) -> ChangeRow:
    """Apply the user's pending change, once. `ChangeNotFound`, `ChangeConflict` (decided
    already: nothing is applied again) or `ChangeInvalid` (it can no longer be applied, e.g.
    the focus catalog changed; it stays pending)."""
    return await decide_change(pool, user_id, change_id, "applied", _apply)


async def reject_change(pool: Pool, user_id: str, change_id: str) -> ChangeRow:
    """Reject the user's pending change; nothing is written. `ChangeNotFound` or
    `ChangeConflict` as for `accept_change`."""
    return await decide_change(pool, user_id, change_id, "rejected")


async def answer_change(pool: Pool, user_id: str, change_id: str, *, accept: bool) -> ChangeRow:
    """`accept_change` or `reject_change` with their failures as the `ApiError` both HTTP and
    the WebSocket answer with: 404 `change_not_found` (unknown, foreign or expired), 409
    `change_already_decided` (nothing is applied twice), 409 `change_invalid` (it stays
    pending), 503 `database_unavailable`."""
    try:
        if accept:
            return await accept_change(pool, user_id, change_id)
        return await reject_change(pool, user_id, change_id)
    except ChangeNotFound as exc:
        message = "no such pending change (unknown, or expired)"
        raise ApiError(404, "change_not_found", message) from exc
    except ChangeConflict as exc:
        message = f"this change was {exc.row.status} already; nothing was done"
        raise ApiError(409, "change_already_decided", message) from exc
    except ChangeInvalid as exc:
        message = f"this change can no longer be applied: {exc}"
        raise ApiError(409, "change_invalid", message) from exc
    except DATABASE_UNAVAILABLE as exc:
        message = "the database is unreachable; retry shortly"
        raise ApiError(
            503, "database_unavailable", message, retryable=True, headers={"Retry-After": "2"}
        ) from exc


async def _apply(conn: Connection, change: ChangeRow) -> None:
    if change.kind == "focus_change":
        focus_ids = [str(f) for f in change.payload.get("focus_ids", [])]
        problem = focus_choice_problem(focus_ids, await _known_focuses(conn))
        if problem:
            raise ChangeInvalid(problem)
        await write_active_focuses(conn, change.user_id, focus_ids)
    elif change.kind == "memory":
        await add_memory(conn, change.user_id, str(change.payload["text"]), change.id)
    else:
        raise ChangeInvalid(f"a change of kind {change.kind!r} cannot be applied")


async def _known_focuses(db: Executor) -> frozenset[str]:
    return frozenset(f.id for f in await list_focuses(db))
