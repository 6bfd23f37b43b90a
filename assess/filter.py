"""The cheap filter: which scope of assessment a finished turn calls for, with no model call."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Scope", "TurnFacts", "buffer_room", "decide"]

# "buffer": wait in the session's multi-turn buffer until enough turns accumulate.
Scope = Literal["none", "buffer", "interaction", "multi_turn", "session_summary"]

_CHITCHAT = frozenset(
    {
        *("hi", "hey", "hello", "yo", "thanks", "thank", "you", "thx", "ok", "okay", "cool"),
        *("great", "bye", "goodbye", "good", "morning", "evening", "night", "sure", "yes"),
        *("no", "yep", "nope", "lol", "nice", "got", "it", "alright"),
    }
)
_WORD = re.compile(r"[a-z']+")
SUBSTANTIAL_WORDS = 30  # a practice answer or a spoken passage: worth assessing on its own
SUBSTANTIAL_AUDIO_MS = 10_000


@dataclass(frozen=True, slots=True)
class TurnFacts:
    user_text: str
    reply_text: str
    status: str
    audio_in_ms: int = 0


def decide(turn: TurnFacts, buffered_others: int, *, min_turns: int, max_turns: int) -> Scope:
    """The scope for `turn`, given how many other turns of its session wait in the buffer."""
    words = _WORD.findall(turn.user_text.lower())
    if turn.status != "completed" and not turn.reply_text.strip():
        return "none"
    if len(words) <= 1 or (len(words) <= 3 and all(w in _CHITCHAT for w in words)):
        return "none"
    if len(words) >= SUBSTANTIAL_WORDS or turn.audio_in_ms >= SUBSTANTIAL_AUDIO_MS:
        return "interaction"
    if buffered_others >= buffer_room(min_turns, max_turns):
        return "multi_turn"
    return "buffer"


def buffer_room(min_turns: int, max_turns: int) -> int:
    """How many other turns of a session may wait in its buffer before a turn that would join
    them makes the group assessed instead."""
    return min(min_turns, max_turns) - 1
