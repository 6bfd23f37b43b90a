"""`focuses` and `user_focuses`: what a user practises (at most 3 active, ordered 1-3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from db.pool import Executor, Pool

__all__ = [
    "MAX_ACTIVE",
    "Focus",
    "active_focuses",
    "catalog_and_active",
    "list_focuses",
    "set_active_focuses",
    "write_active_focuses",
]

MAX_ACTIVE = 3


@dataclass(frozen=True, slots=True)
class Focus:
    id: str
    name: str
    description: str


async def list_focuses(db: Executor) -> list[Focus]:
    """Every known focus."""
    rows = await db.fetch("SELECT id, name, description FROM focuses ORDER BY id")
    return [Focus(**dict(r)) for r in rows]


async def active_focuses(db: Executor, user_id: str) -> list[Focus]:
    """The user's active focuses in their order."""
    rows = await db.fetch(
        "SELECT f.id, f.name, f.description FROM user_focuses uf JOIN focuses f"
        " ON f.id = uf.focus_id WHERE uf.user_id = $1 AND uf.active ORDER BY uf.position",
        user_id,
    )
    return [Focus(**dict(r)) for r in rows]


async def catalog_and_active(db: Executor, user_id: str) -> tuple[list[Focus], list[Focus]]:
    """Every known focus, and the user's active ones in their order: one round trip."""
    rows = await db.fetch(
        "SELECT f.id, f.name, f.description, uf.position FROM focuses f"
        " LEFT JOIN user_focuses uf ON uf.focus_id = f.id AND uf.user_id = $1 AND uf.active"
        " ORDER BY f.id",
        user_id,
    )
    catalog = [Focus(r["id"], r["name"], r["description"]) for r in rows]
    active = sorted((r for r in rows if r["position"] is not None), key=lambda r: r["position"])
    return catalog, [Focus(r["id"], r["name"], r["description"]) for r in active]


async def set_active_focuses(pool: Pool, user_id: str, focus_ids: Sequence[str]) -> None:
    """Make `focus_ids` (at most 3, in order) the user's active focuses; others go inactive."""
    if len(focus_ids) > MAX_ACTIVE or len(set(focus_ids)) != len(focus_ids):
        raise ValueError(f"at most {MAX_ACTIVE} distinct focuses, got {list(focus_ids)}")
    async with pool.acquire() as conn, conn.transaction():
        await write_active_focuses(conn, user_id, focus_ids)


async def write_active_focuses(conn: Executor, user_id: str, focus_ids: Sequence[str]) -> None:
    """`set_active_focuses` inside the caller's transaction (an accepted change applies it)."""
    if len(focus_ids) > MAX_ACTIVE or len(set(focus_ids)) != len(focus_ids):
        raise ValueError(f"at most {MAX_ACTIVE} distinct focuses, got {list(focus_ids)}")
    await conn.execute("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", user_id)
    await conn.execute(
        "UPDATE user_focuses SET active = false, position = NULL WHERE user_id = $1", user_id
    )
    for position, focus_id in enumerate(focus_ids, start=1):
        await conn.execute(
            "INSERT INTO user_focuses (user_id, focus_id, position, active)"
            " VALUES ($1, $2, $3, true) ON CONFLICT (user_id, focus_id)"
            " DO UPDATE SET position = EXCLUDED.position, active = true",
            user_id,
            focus_id,
            position,
        )
