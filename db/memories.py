"""`memories`: what a user accepted to have the coach remember (an accepted `remember` change).

Every read and delete is keyed by the user. `relevant_memories` picks what joins a turn's
context: ranked by full-text relevance to the turn's text, then recency, cut to a token budget.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.pool import Executor

__all__ = [
    "MemoryRow",
    "add_memory",
    "any_words_query",
    "delete_memory",
    "estimate_tokens",
    "list_memories",
    "relevant_memories",
]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_MAX_WORDS = 32
_CANDIDATES = 200  # memories ranked per turn; a user rarely keeps more


@dataclass(frozen=True, slots=True)
class MemoryRow:
    id: int
    text: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "text": self.text, "created_at": self.created_at.isoformat()}


def any_words_query(text: str) -> str:
    """`text` as a `websearch_to_tsquery` that matches ANY of its words: a turn or a tool's
    query is a sentence, and requiring every word of it (the function's default) finds nothing.
    `websearch_to_tsquery` never fails on what it is given, and drops stop words itself."""
    return " or ".join(_WORD.findall(text)[:_MAX_WORDS])


def estimate_tokens(text: str) -> int:
    """Tokens `text` costs in a prompt: about four characters each in English (no tokenizer
    ships for every model the gateway may route to, and the budget is a bound, not a bill)."""
    return max(1, math.ceil(len(text) / 4))


async def add_memory(db: Executor, user_id: str, text: str, change_id: str | None = None) -> int:
    """Keep `text` for the user (who must exist); its id."""
    memory_id = await db.fetchval(
        "INSERT INTO memories (user_id, text, change_id) VALUES ($1, $2, $3) RETURNING id",
        user_id,
        text,
        change_id,
    )
    return int(memory_id)


async def list_memories(db: Executor, user_id: str, *, limit: int = 200) -> list[MemoryRow]:
    """The user's memories, newest first."""
    records = await db.fetch(
        "SELECT id, text, created_at FROM memories WHERE user_id = $1"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        user_id,
        limit,
    )
    return [MemoryRow(**dict(r)) for r in records]


async def delete_memory(db: Executor, user_id: str, memory_id: int) -> bool:
    """Forget one of the user's memories; False when the user has no such memory."""
    deleted = await db.fetchval(
        "DELETE FROM memories WHERE id = $1 AND user_id = $2 RETURNING id", memory_id, user_id
    )
    return deleted is not None


async def relevant_memories(
    db: Executor, user_id: str, text: str, *, budget_tokens: int
) -> list[str]:
    """The user's memories for a turn about `text`: the most relevant first (full-text rank,
    then the newest), as many as fit in `budget_tokens` (one that does not fit is skipped and
    smaller ones after it may still join)."""
    if budget_tokens <= 0:
        return []
    records = await db.fetch(
        "SELECT text FROM memories WHERE user_id = $1"
        " ORDER BY ts_rank(search, websearch_to_tsquery('english', $2)) DESC,"
        " created_at DESC, id DESC LIMIT $3",
        user_id,
        any_words_query(text),
        _CANDIDATES,
    )
    chosen: list[str] = []
    left = budget_tokens
    for record in records:
        cost = estimate_tokens(record["text"])
        if cost <= left:
            chosen.append(record["text"])
            left -= cost
    return chosen
