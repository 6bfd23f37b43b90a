"""Live session state: the conversation a user's connections share while it is in memory.

A session is the coaching conversation, not the connection: several connections (a phone and a
dashboard, or a reconnect) can hold the same `LiveSession`, which keeps the bounded history and
fans events out to every attached connection.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from providers.chat import Message
from streams.events import ProtocolError, ServerEvent
from streams.prompts import COACHES
from streams.records import SessionInfo

__all__ = [
    "LiveSession",
    "MemorySessionStore",
    "SessionChoices",
    "SessionConfig",
    "SessionRegistry",
    "TurnDetection",
]

EventSink = Callable[[ServerEvent], None]


@dataclass(frozen=True, slots=True)
class SessionChoices:
    """What `session.update` may pick: every value a client sends is checked against these."""

    models: frozenset[str]  # the models the `chat` route's targets serve
    focus_ids: frozenset[str]  # the focus catalog
    coaches: frozenset[str] = frozenset(COACHES)
    default_model: str = "coach"  # the name that means "the route's default target"

    def model(self, value: str | None) -> str | None:
        if value in (None, "", self.default_model):
            return None
        if value not in self.models:
            raise ProtocolError(
                "unknown_model", f"session.model: no chat route serves {_show(value)}"
            )
        return value

    def coach(self, value: str) -> str:
        if value not in self.coaches:
            known = ", ".join(sorted(self.coaches))
            message = f"session.coach: unknown coach {_show(value)}; known: {known}"
            raise ProtocolError("unknown_coach", message)
        return value

    def focus(self, values: list[str]) -> tuple[str, ...]:
        unknown = [_show(v) for v in values if v not in self.focus_ids]
        if unknown:
            known = ", ".join(sorted(self.focus_ids))
            message = f"session.focus_ids: unknown focus ids {', '.join(unknown)}; known: {known}"
            raise ProtocolError("unknown_focus", message)
        return tuple(values)


def _show(value: object, limit: int = 40) -> str:
    """A client's value quoted for an error message, cut short (it may be kilobytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """`turn_detection: {type: "server_vad", ...}`: the gateway finds the end of speech itself.
    None values take the gateway's `[voice]` defaults."""

    silence_ms: int | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "server_vad", "silence_ms": self.silence_ms, "threshold": self.threshold}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a client set with `session.update`: one channel's settings, nobody else's."""

    coach: str = "default"
    focus_ids: tuple[str, ...] = ()
    voice_output: bool = False
    voice: str | None = None
    input_audio_format: str = "pcm16"
    model: str | None = None
    turn_detection: TurnDetection | None = None
    tools: bool = False  # the agent's server tools on this channel's turns (DESIGN.md, "Agent")

    def updated(self, patch: dict[str, Any], choices: SessionChoices) -> SessionConfig:
        """A copy with `patch` (parsed by `parse_client_event`) applied, once every value in it
        is checked against `choices`: `ProtocolError` naming the field otherwise, and then
        nothing changes."""
        changes: dict[str, Any] = {}
        if "coach" in patch:
            changes["coach"] = choices.coach(patch["coach"])
        if "focus_ids" in patch:
            changes["focus_ids"] = choices.focus(patch["focus_ids"])
        if "model" in patch:
            changes["model"] = choices.model(patch["model"])
        if "voice" in patch:
            voice = patch["voice"] or {}
            changes["voice_output"] = bool(voice.get("output", False))
            changes["voice"] = voice.get("voice")
        if "input_audio_format" in patch:
            changes["input_audio_format"] = patch["input_audio_format"]
        if "turn_detection" in patch:
            detection = patch["turn_detection"]  # checked by `parse_client_event`
            changes["turn_detection"] = detection and TurnDetection(
                None if detection.get("silence_ms") is None else int(detection["silence_ms"]),
                detection.get("threshold"),
            )
        if "tools" in patch:
            changes["tools"] = bool(patch["tools"])  # checked by `parse_client_event`
        config = replace(self, **changes)
        if config.turn_detection is not None and config.input_audio_format != "pcm16":
            message = "session.turn_detection: server_vad takes input_audio_format pcm16"
            raise ProtocolError("invalid_session", message)
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "coach": self.coach,
            "focus_ids": list(self.focus_ids),
            "voice": {"output": self.voice_output, "voice": self.voice},
            "input_audio_format": self.input_audio_format,
            "model": self.model,
            "turn_detection": self.turn_detection and self.turn_detection.to_dict(),
            "tools": self.tools,
        }


@dataclass(slots=True)
class LiveSession:
    """One channel's hold on a session (a socket, a `POST /v1/chat` request): the conversation's
    history and connections, which every channel on the session shares, and this channel's own
    `config`, which no other channel sees."""

    session_id: str
    user_id: str
    history: deque[Message]
    config: SessionConfig = field(default_factory=SessionConfig)
    sinks: set[EventSink] = field(default_factory=set)

    def join(self) -> LiveSession:
        """Another channel on this conversation: the same history and connections, default
        settings."""
        return LiveSession(self.session_id, self.user_id, self.history, sinks=self.sinks)

    def add_exchange(self, user_text: str, reply_text: str) -> None:
        self.history.append(Message("user", user_text))
        self.history.append(Message("assistant", reply_text))

    def broadcast(self, event: ServerEvent) -> None:
        """Send an event to every connection attached to this session (never blocks)."""
        for sink in list(self.sinks):
            sink(event)


class SessionRegistry:
    """Sessions held in memory while at least one connection is attached to them."""

    def __init__(self, history_turns: int, parked_sessions: int = 10_000) -> None:
        self._history_turns = history_turns
        self._live: dict[str, LiveSession] = {}
        self._by_user: dict[str, set[str]] = {}  # user id -> ids of their live sessions
        # Sessions with no connection stay here (LRU, bounded) so a reconnect keeps its context
        # without a database round trip; the oldest is forgotten past `parked_sessions`.
        self._parked: OrderedDict[str, LiveSession] = OrderedDict()
        self._parked_max = parked_sessions

    def attach(self, info: SessionInfo, sink: EventSink) -> LiveSession:
        """Join `sink`'s channel to the session: its own `LiveSession`, default settings.

        Settings are per channel, never kept here: a session outlives its sockets (parked, and
        joined by every channel of the user), so what one client set would reach them all."""
        shared = self._live.get(info.session_id) or self._parked.pop(info.session_id, None)
        if shared is None:
            history: deque[Message] = deque(info.history, maxlen=2 * self._history_turns)
            shared = LiveSession(info.session_id, info.user_id, history)
        self._live[info.session_id] = shared
        self._by_user.setdefault(info.user_id, set()).add(info.session_id)
        shared.sinks.add(sink)
        return shared.join()

    def detach(self, live: LiveSession, sink: EventSink) -> None:
        live.sinks.discard(sink)
        if not live.sinks and (shared := self._live.pop(live.session_id, None)) is not None:
            self._forget_live(shared)
            self._parked[live.session_id] = shared
            while len(self._parked) > self._parked_max:
                self._parked.popitem(last=False)

    def _forget_live(self, shared: LiveSession) -> None:
        ids = self._by_user.get(shared.user_id)
        if ids is not None:
            ids.discard(shared.session_id)
            if not ids:
                del self._by_user[shared.user_id]

    def get(self, session_id: str) -> LiveSession | None:
        return self._live.get(session_id)

    def sessions_of(self, user_id: str) -> list[str]:
        """The ids of the user's sessions with a connection in this process."""
        return sorted(self._by_user.get(user_id, ()))

    def deliver(self, session_id: str, event: ServerEvent) -> None:
        """Push an event (an assessment, live coaching) to a session's live connections."""
        live = self._live.get(session_id)
        if live is not None:
            live.broadcast(event)

    def __len__(self) -> int:
        return len(self._live)


class MemorySessionStore:
    """Sessions kept in process memory: for runs without a database."""

    def __init__(
        self, idle_minutes: float = 20.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._idle_s = idle_minutes * 60
        self._clock = clock
        self._owner: dict[str, str] = {}
        self._last_active: dict[str, float] = {}
        self._latest: dict[str, str] = {}

    async def open(self, user_id: str, session_id: str | None) -> SessionInfo:
        now = self._clock()
        if session_id is not None:
            if self._owner.get(session_id) != user_id:
                raise LookupError(session_id)
            self._last_active[session_id] = now
            return SessionInfo(session_id, user_id, resumed=True)
        latest = self._latest.get(user_id)
        if latest is not None and now - self._last_active[latest] < self._idle_s:
            self._last_active[latest] = now
            return SessionInfo(latest, user_id, resumed=True)
        new_id = str(uuid.uuid4())
        self._owner[new_id] = user_id
        self._latest[user_id] = new_id
        self._last_active[new_id] = now
        return SessionInfo(new_id, user_id, resumed=False)

    async def touch(self, session_id: str) -> None:
        if session_id in self._last_active:
            self._last_active[session_id] = self._clock()
