"""`changes`: writes the agent proposed, held until the user accepts or rejects them.

Every read and decision is keyed by the user: another user's change, like an unknown one, is
not found. A pending change past `expires_at` reads as `expired` (and is marked so when the
user's changes are listed); it can no longer be decided.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from db.pool import Connection, Executor, Pool

__all__ = [
    "STATUSES",
    "ChangeConflict",
    "ChangeNotFound",
    "ChangeRow",
    "create_change",
    "decide_change",
    "get_change",
    "list_changes",
]

Status = Literal["pending", "applied", "rejected", "expired"]
STATUSES: tuple[Status, ...] = ("pending", "applied", "rejected", "expired")
Kind = Literal["focus_change", "memory"]

# `status` as the client sees it: a pending row past its expiry is expired, marked or not.
_STATUS = (
    "CASE WHEN status = 'pending' AND expires_at <= clock_timestamp() THEN 'expired'"
    " ELSE status END AS status"
)
_COLUMNS = f"id, user_id, session_id, kind, payload, {_STATUS}, created_at, expires_at, decided_at"


@dataclass(frozen=True, slots=True)
class ChangeRow:
    id: str
    user_id: str
    session_id: str | None
    kind: str
    payload: dict[str, Any]
    status: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The change as the client sees it (`change.proposed`, `/v1/changes`)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "payload": self.payload,
            "status": self.status,
            "expires_at": self.expires_at.isoformat(),
            "created_at": self.created_at.isoformat(),
        }


class ChangeNotFound(LookupError):
    """No such change of this user, or it expired before it was decided."""


class ChangeConflict(Exception):
    """The change was decided already; `row` says how."""

    def __init__(self, row: ChangeRow) -> None:
        super().__init__(f"change {row.id} is {row.status} already")
        self.row = row


def _row(record: Any) -> ChangeRow:
    return ChangeRow(**dict(record))


async def create_change(
    db: Executor,
    user_id: str,
    session_id: str | None,
    kind: Kind,
    payload: dict[str, Any],
    *,
    ttl_s: float,
) -> ChangeRow:
    """A new pending change (and the user, if new), expiring `ttl_s` from now. A `session_id`
    that is not the user's is not recorded."""
    record = await db.fetchrow(
        "WITH u AS (INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING)"
        " INSERT INTO changes (user_id, session_id, kind, payload, expires_at)"
        " VALUES ($1, (SELECT id FROM sessions WHERE id = $2 AND user_id = $1), $3, $4,"
        " clock_timestamp() + make_interval(secs => $5))"
        f" RETURNING {_COLUMNS}",
        user_id,
        session_id,
        kind,
        payload,
        ttl_s,
    )
    return _row(record)


async def get_change(db: Executor, user_id: str, change_id: str) -> ChangeRow | None:
    """The user's change, else None (another user's change does not exist)."""
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM changes WHERE id = $1 AND user_id = $2", change_id, user_id
    )
    return None if record is None else _row(record)


async def list_changes(
    pool: Pool, user_id: str, status: Status, *, limit: int = 50
) -> list[ChangeRow]:
    """The user's changes in `status`, newest first. Pending ones past their expiry are marked
    expired on the way."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE changes SET status = 'expired' WHERE user_id = $1 AND status = 'pending'"
            " AND expires_at <= clock_timestamp()",
            user_id,
        )
        records = await conn.fetch(
            f"SELECT {_COLUMNS} FROM changes WHERE user_id = $1 AND status = $2"
            " ORDER BY created_at DESC, id LIMIT $3",
            user_id,
            status,
            limit,
        )
    return [_row(r) for r in records]


Apply = Callable[[Connection, ChangeRow], Awaitable[None]]


async def decide_change(
    pool: Pool,
    user_id: str,
    change_id: str,
    decision: Literal["applied", "rejected"],
    apply: Apply | None = None,
) -> ChangeRow:
    """Decide a pending change, once: in ONE transaction the status moves from pending (only
    while it has not expired) to `decision`, and `apply` writes what the change says on the same
    connection; if `apply` raises, nothing is decided. `ChangeNotFound` for an unknown, foreign
    or expired change; `ChangeConflict` when it was decided already."""
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(
            "UPDATE changes SET status = $3, decided_at = clock_timestamp()"
            " WHERE id = $1 AND user_id = $2 AND status = 'pending'"
            f" AND expires_at > clock_timestamp() RETURNING {_COLUMNS}",
            change_id,
            user_id,
            decision,
        )
        if record is None:
            found = await get_change(conn, user_id, change_id)
            if found is None or found.status in ("pending", "expired"):
                raise ChangeNotFound(change_id)
            raise ChangeConflict(found)
        row = _row(record)
        if apply is not None:
            await apply(conn, row)
        return row
