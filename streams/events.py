"""Wire events of the realtime protocol (DESIGN.md, "Realtime WebSocket").

Every event is a frozen dataclass. `ServerEvent` and `ClientEvent` are unions, so a `match`
with `assert_never` catches a forgotten case. Encoding to JSON happens at the edge (`encode`),
parsing of client frames in `parse_client_event`. Server events have no `__slots__`: orjson
serialises a dataclass through its `__dict__`, and on a slotted one it first fails to get
`__dict__` (an AttributeError formatted and dropped) before falling back, several times slower
per event (figures in loadtests/BENCHMARKS.md). That `__dict__` also keeps the event's JSON once
encoded (`encode_json`), so that the client's stream and the session's live feed send the same
bytes. Client events, parsed and never encoded, are slotted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

__all__ = [
    "AssessmentCreated",
    "AssessmentRequest",
    "ChangeAnswer",
    "ChangeApplied",
    "ChangeProposed",
    "ChangeRejected",
    "ClientEvent",
    "CoachingFeedback",
    "ErrorEvent",
    "InputAudioCommit",
    "InputAudioSpeechStarted",
    "InputAudioSpeechStopped",
    "InputText",
    "InsightCreated",
    "MetricsPush",
    "Ping",
    "Pong",
    "ProtocolError",
    "RateLimitedEvent",
    "ResponseAudio",
    "ResponseCancel",
    "ResponseCompleted",
    "ResponseDelta",
    "ResponseFailed",
    "ResponseStarted",
    "ResponseToolCall",
    "ResponseToolResult",
    "ServerEvent",
    "SessionCreated",
    "SessionEnd",
    "SessionEnded",
    "SessionUpdate",
    "SessionUpdated",
    "Transcript",
    "TranscriptDelta",
    "encode",
    "has_nul",
    "json_error_message",
    "kind_of",
    "parse_client_event",
]

MAX_TEXT_CHARS = 16_000


class ProtocolError(ValueError):
    """A client frame that is not a valid event; answered with an `error` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- server -> client


@dataclass(frozen=True)
class SessionCreated:
    type: ClassVar[str] = "session.created"
    session_id: str
    user_id: str
    limits: dict[str, Any]
    resumed: bool = False


@dataclass(frozen=True)
class SessionUpdated:
    type: ClassVar[str] = "session.updated"
    session: dict[str, Any]


@dataclass(frozen=True)
class Transcript:
    type: ClassVar[str] = "transcript"
    turn_id: str
    text: str
    audio_ms: int
    stt_ms: int


@dataclass(frozen=True)
class TranscriptDelta:
    """A partial transcript of the utterance still being spoken (server VAD); the `transcript`
    event with the same `turn_id` replaces it."""

    type: ClassVar[str] = "transcript.delta"
    turn_id: str
    text: str


@dataclass(frozen=True)
class InputAudioSpeechStarted:
    """Server VAD heard speech start, `audio_ms` into the connection's audio stream."""

    type: ClassVar[str] = "input_audio.speech_started"
    audio_ms: int
    turn_id: str


@dataclass(frozen=True)
class InputAudioSpeechStopped:
    """Server VAD heard the speech end; the utterance is committed without a client commit."""

    type: ClassVar[str] = "input_audio.speech_stopped"
    audio_ms: int
    turn_id: str


@dataclass(frozen=True)
class ResponseStarted:
    type: ClassVar[str] = "response.started"
    turn_id: str
    provider: str
    model: str


@dataclass(frozen=True)
class ResponseDelta:
    type: ClassVar[str] = "response.delta"
    turn_id: str
    text: str


@dataclass(frozen=True)
class ResponseToolCall:
    """The model called a tool: `arguments` is its JSON text as the model wrote it (unchecked)."""

    type: ClassVar[str] = "response.tool_call"
    turn_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ResponseAudio:
    type: ClassVar[str] = "response.audio"
    turn_id: str
    seq: int
    format: Literal["mp3", "wav", "pcm16"]
    sample_rate: int
    audio: str  # base64


@dataclass(frozen=True)
class ResponseCompleted:
    type: ClassVar[str] = "response.completed"
    turn_id: str
    text: str
    finish_reason: str
    usage: dict[str, int]
    timings: dict[str, float | None]
    provider: str
    model: str
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    # Where the turn was kept before this event left: "db", "spool" (Postgres unreachable; it
    # is written there when it returns) or "none" (the gateway runs without a database).
    stored: str = "none"


@dataclass(frozen=True)
class ResponseFailed:
    type: ClassVar[str] = "response.failed"
    turn_id: str
    error: dict[str, Any]
    partial_text: str


@dataclass(frozen=True)
class ResponseToolResult:
    """A server tool the model called has run: `summary` is a short line for the user."""

    type: ClassVar[str] = "response.tool_result"
    turn_id: str
    call_id: str
    ok: bool
    summary: str


@dataclass(frozen=True)
class ChangeProposed:
    """A change the agent proposed (`change`: `{id, kind, payload, status, expires_at,
    created_at}`): nothing is written until the user accepts it."""

    type: ClassVar[str] = "change.proposed"
    change: dict[str, Any]


@dataclass(frozen=True)
class ChangeApplied:
    type: ClassVar[str] = "change.applied"
    change: dict[str, Any]


@dataclass(frozen=True)
class ChangeRejected:
    type: ClassVar[str] = "change.rejected"
    change: dict[str, Any]


@dataclass(frozen=True)
class AssessmentCreated:
    type: ClassVar[str] = "assessment.created"
    assessment: dict[str, Any]


@dataclass(frozen=True)
class InsightCreated:
    type: ClassVar[str] = "insight.created"
    insight: dict[str, Any]


@dataclass(frozen=True)
class CoachingFeedback:
    type: ClassVar[str] = "coaching.feedback"
    text: str
    weakest_metric: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class RateLimitedEvent:
    type: ClassVar[str] = "rate_limited"
    scope: str
    retry_after_ms: int


@dataclass(frozen=True)
class ErrorEvent:
    type: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool = False


@dataclass(frozen=True)
class SessionEnded:
    """The session is closed (`session.end`): its summary is queued and the socket closes."""

    type: ClassVar[str] = "session.ended"
    session_id: str


@dataclass(frozen=True)
class Pong:
    type: ClassVar[str] = "pong"


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | Transcript
    | TranscriptDelta
    | InputAudioSpeechStarted
    | InputAudioSpeechStopped
    | ResponseStarted
    | ResponseDelta
    | ResponseToolCall
    | ResponseToolResult
    | ChangeProposed
    | ChangeApplied
    | ChangeRejected
    | ResponseAudio
    | ResponseCompleted
    | ResponseFailed
    | AssessmentCreated
    | InsightCreated
    | CoachingFeedback
    | RateLimitedEvent
    | ErrorEvent
    | SessionEnded
    | Pong
)


# Where an event keeps its JSON. orjson leaves out a dataclass's attributes whose name starts
# with an underscore (documented since orjson 3.0.2), so the JSON never contains itself.
_JSON = "_json"


def encode_json(event: ServerEvent) -> bytes:
    """The event as JSON, its `type` first, encoded once per event: every later call returns the
    same bytes (a token goes to the client's socket or SSE stream and to the session's feed; each
    asks here). An event is a value: its fields, dicts and lists included, are not changed once
    it is made.

    On the per-token path: orjson serialises the dataclass natively (much faster than building a
    dict first), and the `type` is spliced in front."""
    attrs = event.__dict__
    data: bytes | None = attrs.get(_JSON)
    if data is None:
        body = orjson.dumps(event)
        data = b'{"type":"' + event.type.encode() + (b'",' if len(body) > 2 else b'"') + body[1:]
        attrs[_JSON] = data  # a frozen dataclass: set past its __setattr__
    return data


def encode(event: ServerEvent) -> str:
    """One JSON text frame (`encode_json` as text)."""
    return encode_json(event).decode()


# ---------------------------------------------------------------- client -> server


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    type: ClassVar[str] = "session.update"
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InputText:
    type: ClassVar[str] = "input_text"
    text: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class InputAudioCommit:
    type: ClassVar[str] = "input_audio.commit"
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    type: ClassVar[str] = "response.cancel"
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class MetricsPush:
    type: ClassVar[str] = "metrics.push"
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class SessionEnd:
    type: ClassVar[str] = "session.end"


@dataclass(frozen=True, slots=True)
class AssessmentRequest:
    """Assess now, whatever the filter says: the latest completed turn (or `turn_id`), or with
    `scope` "session" a summary of the session so far."""

    type: ClassVar[str] = "assessment.request"
    scope: Literal["recent", "session"] = "recent"
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeAnswer:
    """`change.accept` / `change.reject`: the user's answer to a proposed change."""

    type: ClassVar[str] = "change.answer"
    change_id: str
    accept: bool


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[str] = "ping"


ClientEvent = (
    SessionUpdate
    | InputText
    | InputAudioCommit
    | ResponseCancel
    | MetricsPush
    | SessionEnd
    | AssessmentRequest
    | ChangeAnswer
    | Ping
)

SESSION_KEYS = frozenset(
    {"coach", "focus_ids", "voice", "input_audio_format", "model", "turn_detection", "tools"}
)


def kind_of(value: Any) -> str:
    """What a parsed JSON value is, in the words of an error message ("a number")."""
    match value:
        case None:
            return "null"
        case bool():
            return "true or false"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return "something else"


def json_error_message(
    data: str | bytes | bytearray, exc: orjson.JSONDecodeError, what: str
) -> str:
    """Why `data` (`what`: "body", "frame") did not parse, in the gateway's words: where the
    first bad byte or character is, never the parser's own wording."""
    if not isinstance(data, str):
        try:
            bytes(data).decode()
        except UnicodeDecodeError as bad:
            return f"{what} is not valid UTF-8 (at byte {bad.start})"
    if not data.strip():
        return f"{what} is empty; send a JSON object"
    return f"{what} is not valid JSON (at line {exc.lineno}, column {exc.colno})"


def _wrong_type(code: str, name: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(code, f"{name} must be {expected}, not {kind_of(value)}")


def _opt_turn_id(obj: dict[str, Any]) -> str | None:
    turn_id = obj.get("turn_id")
    if turn_id is None:
        return None
    if not isinstance(turn_id, str):
        raise _wrong_type("invalid_turn_id", "turn_id", "a string", turn_id)
    if not 0 < len(turn_id) <= 64:
        raise ProtocolError("invalid_turn_id", "turn_id must be a string of 1 to 64 characters")
    return turn_id


def _parse_session(obj: dict[str, Any]) -> SessionUpdate:
    session = obj.get("session")
    if session is None:
        raise ProtocolError("invalid_session", "session.update needs a `session` object")
    if not isinstance(session, dict):
        raise _wrong_type("invalid_session", "session", "an object", session)
    unknown = set(session) - SESSION_KEYS
    if unknown:
        raise ProtocolError("invalid_session", f"unknown session keys: {sorted(unknown)}")
    # Types only: whether a value names a known coach, focus or model is for `SessionConfig`.
    voice = session.get("voice")
    if voice is not None and not (
        isinstance(voice, dict)
        and set(voice) <= {"output", "voice"}
        and isinstance(voice.get("output", False), bool)
        and (voice.get("voice") is None or _short_str(voice["voice"]))
    ):
        message = "session.voice must be an object like {output: bool, voice?: string}"
        raise ProtocolError("invalid_session", message)
    if "input_audio_format" in session and session["input_audio_format"] not in ("pcm16", "webm"):
        raise ProtocolError("invalid_session", "session.input_audio_format must be pcm16 or webm")
    focus_ids = session.get("focus_ids", [])
    if not (
        isinstance(focus_ids, list)
        and len(focus_ids) <= 3
        and all(isinstance(f, str) for f in focus_ids)
        and len(set(focus_ids)) == len(focus_ids)
    ):
        message = "session.focus_ids must be a list of at most 3 distinct strings"
        raise ProtocolError("invalid_session", message)
    if session.get("turn_detection") is not None:
        _check_turn_detection(session["turn_detection"])
    if "tools" in session and not isinstance(session["tools"], bool):
        raise _wrong_type("invalid_session", "session.tools", "true or false", session["tools"])
    if "coach" in session and not isinstance(session["coach"], str):
        raise _wrong_type("invalid_session", "session.coach", "a string", session["coach"])
    if session.get("model") is not None and not isinstance(session["model"], str):
        raise _wrong_type("invalid_session", "session.model", "a string or null", session["model"])
    return SessionUpdate(session)


TURN_DETECTION_RANGES = {"silence_ms": (100, 5000), "threshold": (0.05, 0.95)}


def _check_turn_detection(value: Any) -> None:
    """`session.turn_detection`: `{type: "server_vad", silence_ms?, threshold?}` (or null, off);
    `ProtocolError` naming the field otherwise."""
    name = "session.turn_detection"
    if not isinstance(value, dict):
        raise _wrong_type("invalid_session", name, "an object or null", value)
    unknown = set(value) - {"type", *TURN_DETECTION_RANGES}
    if unknown:
        raise ProtocolError("invalid_session", f"{name}: unknown keys {sorted(unknown)}")
    if value.get("type") != "server_vad":
        raise ProtocolError("invalid_session", f'{name}.type must be "server_vad"')
    for key, (low, high) in TURN_DETECTION_RANGES.items():
        number = value.get(key)
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _wrong_type("invalid_session", f"{name}.{key}", "a number", number)
        if not low <= number <= high:
            raise ProtocolError("invalid_session", f"{name}.{key} must be from {low:g} to {high:g}")


def _short_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64


def has_nul(value: Any) -> bool:
    """Whether any string in a parsed JSON value (keys included) holds NUL, which Postgres
    cannot store: such text is refused at the edge, never accepted and then dropped."""
    pending = [value]  # a stack, not recursion: nesting depth is the client's to choose
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _parse_text(obj: dict[str, Any]) -> InputText:
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise _wrong_type("invalid_event", "text", "a string", text)
    if text is None or not text.strip():
        raise ProtocolError("empty_text", "input_text needs a non-empty `text`")
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError("text_too_long", f"text is over {MAX_TEXT_CHARS} characters")
    return InputText(text, _opt_turn_id(obj))


def _parse_metrics(obj: dict[str, Any]) -> MetricsPush:
    metrics = obj.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise _wrong_type("invalid_metrics", "metrics", "an object", metrics)
    if not metrics or len(metrics) > 32:
        raise ProtocolError("invalid_metrics", "metrics must be an object of 1 to 32 numbers")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if len(name) > 64:
            raise ProtocolError("invalid_metrics", "metric names are strings up to 64 characters")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type("invalid_metrics", f"metrics.{name}", "a number", value)
        clean[name] = float(value)
    return MetricsPush(clean)


def _parse_assessment_request(obj: dict[str, Any]) -> AssessmentRequest:
    turn_id = _opt_turn_id(obj)
    match obj.get("scope"):
        case None | "recent":
            return AssessmentRequest("recent", turn_id)
        case "session" if turn_id is None:
            return AssessmentRequest("session")
        case "session":
            raise ProtocolError("invalid_turn_id", 'turn_id is for scope "recent", not "session"')
        case str():
            raise ProtocolError("invalid_scope", 'scope must be "recent" or "session"')
        case other:
            raise _wrong_type("invalid_scope", "scope", "a string", other)


def _parse_change_answer(obj: dict[str, Any], *, accept: bool) -> ChangeAnswer:
    change_id = obj.get("change_id")
    if not _short_str(change_id):
        raise _wrong_type("invalid_event", "change_id", "a string of 1-64 characters", change_id)
    return ChangeAnswer(str(change_id), accept)


def parse_client_event(raw: str | bytes) -> ClientEvent:
    """Parse one text frame; raises `ProtocolError` with a code the client can act on."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", json_error_message(raw, exc, "frame")) from exc
    if not isinstance(obj, dict):
        raise _wrong_type("invalid_event", "a frame", "a JSON object", obj)
    # JSON carries NUL only as the escape `\u0000`: no escape, no walk.
    if ("\\u0000" in raw if isinstance(raw, str) else b"\\u0000" in raw) and has_nul(obj):
        raise ProtocolError("invalid_text", "text must not contain NUL (U+0000) characters")
    match obj.get("type"):
        case "session.update":
            return _parse_session(obj)
        case "input_text":
            return _parse_text(obj)
        case "input_audio.commit":
            return InputAudioCommit(_opt_turn_id(obj))
        case "response.cancel":
            return ResponseCancel(_opt_turn_id(obj))
        case "metrics.push":
            return _parse_metrics(obj)
        case "session.end":
            return SessionEnd()
        case "assessment.request":
            return _parse_assessment_request(obj)
        case "change.accept" | "change.reject" as kind:
            return _parse_change_answer(obj, accept=kind == "change.accept")
        case "ping":
            return Ping()
        case None:
            raise ProtocolError("invalid_event", "frame has no `type`")
        case str() as other:
            raise ProtocolError("unknown_type", f"unknown event type {other[:40]!r}")
        case other:
            raise _wrong_type("invalid_event", "type", "a string", other)
