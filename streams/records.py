"""What the turn engine hands to the rest of the gateway: finished turns and session lookups.

These are the seams between the turn engine and persistence/assessment/observability: the
engine depends only on these protocols, and the gateway wires real implementations in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from providers.chat import Message

__all__ = ["SessionInfo", "SessionStore", "Stored", "TurnKeeper", "TurnObserver", "TurnRecord"]

Channel = Literal["ws", "sse", "openai"]
TurnStatus = Literal["completed", "failed", "cancelled"]
Stored = Literal["db", "spool", "none"]


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """A finished turn: what the user said, what was actually sent back, and how it went."""

    turn_id: str
    request_id: str
    user_id: str
    session_id: str
    channel: Channel
    user_text: str
    reply_text: str
    status: TurnStatus
    finish_reason: str
    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    upstream_ttft_ms: float | None
    total_ms: float
    cost_usd: float
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    error_code: str | None = None
    focus_ids: tuple[str, ...] = ()
    audio_in_ms: int = 0
    first_audio_ms: float | None = None
    started_at: datetime | None = None
    # Set when the guardrails answered the turn with the safety text: "injury" | "self_harm".
    safety_flag: str | None = None


class TurnObserver(Protocol):
    """Told of every finished turn, once it is kept. Must not block the chat path (count,
    enqueue; don't wait)."""

    async def turn_finished(self, record: TurnRecord) -> None: ...


class TurnKeeper(Protocol):
    """Keeps a finished turn before the client is told how it ended: stores it and charges it
    to the user. The engine runs `keep` to its end even if the client goes away meanwhile."""

    async def keep(self, record: TurnRecord) -> Stored | None:
        """Where the turn is stored; None if it could not be (the client is told it failed)."""
        ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    user_id: str
    resumed: bool
    history: tuple[Message, ...] = ()


class SessionStore(Protocol):
    """Finds or opens the caller's coaching session (the conversation, not the connection)."""

    async def open(self, user_id: str, session_id: str | None) -> SessionInfo:
        """Resume `session_id` (must be the caller's, else `LookupError`), or the caller's most
        recent open session within the idle window, or open a new one."""
        ...

    async def touch(self, session_id: str) -> None:
        """Note activity, which keeps the session open."""
        ...
