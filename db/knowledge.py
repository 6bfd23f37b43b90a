"""`knowledge`: the drill catalog and coaching notes as searchable rows (Postgres full-text
search: a weighted `tsvector` column, `websearch_to_tsquery`, `ts_rank`).

Rows belong to the catalog they came from (its digest): loading a catalog adds its rows once
and touches no other catalog's, so replicas with different catalogs can share the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from db.memories import any_words_query
from db.pool import Executor, Pool

__all__ = ["KnowledgeEntry", "KnowledgeHit", "load_knowledge", "search_knowledge"]

# Serialises loaders of the same catalog (replicas starting at once).
_LOCK_CLASS = 0x6B6E


@dataclass(frozen=True, slots=True)
class KnowledgeEntry:
    id: str  # "drill:<drill id>" or "note:<focus id>:<n>"
    kind: str  # drill | note
    title: str
    body: str
    focus_ids: tuple[str, ...]
    minutes: int | None = None


@dataclass(frozen=True, slots=True)
class KnowledgeHit:
    id: str
    kind: str
    title: str
    body: str
    focus_ids: tuple[str, ...]
    minutes: int | None
    rank: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id.split(":", 1)[1] if self.kind == "drill" else self.id,
            "title": self.title,
            "text": self.body,
            "focus_ids": list(self.focus_ids),
            "minutes": self.minutes,
        }


async def load_knowledge(pool: Pool, catalog: str, entries: Sequence[KnowledgeEntry]) -> int:
    """Add the rows of `catalog` (a digest of its content) unless they are there already; how
    many were added."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, catalog)
        loaded = "SELECT EXISTS (SELECT 1 FROM knowledge WHERE catalog = $1)"
        if await conn.fetchval(loaded, catalog):
            return 0
        await conn.execute(
            "INSERT INTO knowledge (catalog, id, kind, title, body, focus_ids, minutes)"
            " SELECT $1, e.id, e.kind, e.title, e.body,"
            "  ARRAY(SELECT jsonb_array_elements_text(e.focus_ids)), e.minutes"
            " FROM jsonb_to_recordset($2::jsonb) AS e("
            "  id text, kind text, title text, body text, focus_ids jsonb, minutes integer)",
            catalog,
            [_entry_json(e) for e in entries],
        )
        return len(entries)


def _entry_json(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "title": entry.title,
        "body": entry.body,
        "focus_ids": list(entry.focus_ids),
        "minutes": entry.minutes,
    }


async def search_knowledge(
    db: Executor,
    catalog: str,
    query: str,
    *,
    focus_id: str | None = None,
    kind: str | None = None,
    limit: int = 5,
) -> list[KnowledgeHit]:
    """The entries of `catalog` that match any word of `query`, best first (`ts_rank`, titles
    weigh more than bodies), optionally only of one focus or kind."""
    records = await db.fetch(
        "SELECT id, kind, title, body, focus_ids, minutes, ts_rank(search, q) AS rank"
        " FROM knowledge, websearch_to_tsquery('english', $2) AS q"
        " WHERE catalog = $1 AND search @@ q"
        " AND ($3::text IS NULL OR $3 = ANY(focus_ids)) AND ($4::text IS NULL OR kind = $4)"
        " ORDER BY rank DESC, kind, id LIMIT $5",
        catalog,
        any_words_query(query),
        focus_id,
        kind,
        limit,
    )
    return [
        KnowledgeHit(**{**dict(r), "focus_ids": tuple(r["focus_ids"]), "rank": float(r["rank"])})
        for r in records
    ]
