"""What `search_drills` retrieves from: the drill catalog and its coaching notes, loaded into
Postgres at start-up (`db.knowledge`) and searched with full-text search.

The rows are keyed by a digest of the catalog, so the search always reads the catalog this
process runs (the shipped one, or `drills_file`), whatever other replicas load.
"""

from __future__ import annotations

import hashlib

import orjson

from db.knowledge import KnowledgeEntry, KnowledgeHit, load_knowledge, search_knowledge
from db.pool import Executor, Pool
from gateway.drills import DrillCatalog

__all__ = ["catalog_digest", "catalog_entries", "load_catalog_knowledge", "search_catalog"]


def catalog_entries(catalog: DrillCatalog) -> list[KnowledgeEntry]:
    """One entry per drill and per coaching note."""
    entries = [
        KnowledgeEntry(f"drill:{d.id}", "drill", d.title, d.description, d.focus_ids, d.minutes)
        for d in catalog.drills
    ]
    for focus_id, notes in catalog.notes.items():
        for index, note in enumerate(notes):
            title = f"Coaching note on {focus_id.replace('_', ' ')}"
            entries.append(
                KnowledgeEntry(f"note:{focus_id}:{index}", "note", title, note, (focus_id,))
            )
    return entries


def catalog_digest(catalog: DrillCatalog) -> str:
    """A digest of everything searchable in `catalog`."""
    content = [
        [e.id, e.kind, e.title, e.body, list(e.focus_ids), e.minutes]
        for e in catalog_entries(catalog)
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()[:32]


async def load_catalog_knowledge(pool: Pool, catalog: DrillCatalog) -> int:
    """Make `catalog` searchable (once per distinct catalog); how many rows were added."""
    return await load_knowledge(pool, catalog_digest(catalog), catalog_entries(catalog))


async def search_catalog(
    db: Executor,
    catalog: DrillCatalog,
    query: str,
    *,
    focus_id: str | None = None,
    limit: int = 5,
) -> list[KnowledgeHit]:
    """Drills and notes of `catalog` matching `query` (any of its words), best first."""
    return await search_knowledge(
        db, catalog_digest(catalog), query, focus_id=focus_id, limit=limit
    )
