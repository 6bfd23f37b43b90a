"""Identifiers: new ones for turns, sessions and requests, and the stable pseudonym that logs,
metrics, traces and quota keys use instead of a user's or session's own id."""

from __future__ import annotations

import functools
import hashlib
import re
import uuid

__all__ = ["hash_id", "new_id", "valid_session_id"]

# Every session id the gateway hands out (a UUID) fits; a client's id that does not (a NUL, which
# Postgres cannot even compare, control characters, kilobytes) is refused before a query sees it.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def valid_session_id(value: str) -> bool:
    """Whether `value` has the shape of a session id (not whether such a session exists)."""
    return _SESSION_ID.fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)  # the same few ids are hashed for every turn and log line
def hash_id(value: str) -> str:
    """A stable, non-reversible id for logs, metrics labels and quota keys."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]
