"""Identifiers: new ones for turns, sessions and requests, and the stable pseudonym that logs,
metrics, traces and quota keys use instead of a user's or session's own id."""

from __future__ import annotations

import functools
import hashlib
import uuid

__all__ = ["hash_id", "new_id"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@functools.lru_cache(maxsize=4096)  # the same few ids are hashed for every turn and log line
def hash_id(value: str) -> str:
    """A stable, non-reversible id for logs, metrics labels and quota keys."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]
