"""`GET /openapi.json`: the OpenAPI 3.1 document of every HTTP route of the gateway.

The document is data written beside the handlers it describes (the schemas of its bodies are in
`gateway.openapi_schemas`), built once with the app. It is kept true by
tests/gateway/test_openapi.py: it lists exactly the app's HTTP routes, and schemathesis drives a
running gateway from it (no 5xx; every status, content type, body and header as documented).
Each error response names the codes the route answers with, so a new code fails that test until
it is documented. The WebSocket `/v1/realtime` is not an HTTP operation: the description points
to docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.openapi_schemas import BOOL, STR, components, ref
from gateway.pages import MEDIA_TYPES

__all__ = ["openapi_document", "openapi_routes"]

Json = dict[str, Any]
Codes = tuple[str, ...] | None  # the codes an error response answers with; None: any

_DESCRIPTION = """\
Realtime gateway for AI coaching apps: streaming chat over server-sent events, an
OpenAI-compatible surface, speech, quotas, failover and assessments.

- Auth: a JWT (HS256 with the gateway's secret, or RS256 from the configured JWKS) as
  `Authorization: Bearer <jwt>`, or as the `access_token` query parameter where a header cannot
  be set (`EventSource`). The `ops` role opens the ops feed and every session's feed.
- Errors: every error, on every path (an unknown path: 404 `not_found`; a method a path does not
  list: 405 `method_not_allowed` with `Allow`; a failure: 500 `internal_error`), is
  `{"error": {"code", "message", "retryable", "type"}}`. Quota refusals are 429 with
  `Retry-After`; a 503 the client may retry says when in `Retry-After` where the gateway knows.
  A request head not complete within a few seconds gets a 408 and the connection is closed.
- Every response carries `X-Request-ID` (the request's own when it sent a sane one). Every GET
  also answers HEAD.
- The WebSocket `GET /v1/realtime` (text and voice turns, session updates, metrics) is not an
  HTTP operation and is not listed here: docs/protocol.md describes it, with every WebSocket and
  SSE event, close code and error code.
- `/mcp` (the agent's tools for MCP clients, over MCP streamable HTTP, with the same bearer
  token) is a protocol endpoint, not listed here either: see docs/protocol.md.
"""


def openapi_routes() -> list[Route]:
    """`GET /openapi.json`, serving the document encoded once."""
    body = orjson.dumps(openapi_document())

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return [Route("/openapi.json", openapi_json, methods=["GET"])]


def openapi_document() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Coach Gateway", "version": "0.1.0", "description": _DESCRIPTION},
        "security": [{"bearerAuth": []}, {"accessToken": []}],
        "paths": {
            **_chat_paths(),
            **_openai_paths(),
            **_audio_paths(),
            **_rest_paths(),
            **_focus_paths(),
            **_skill_paths(),
            **_insight_paths(),
            **_agent_paths(),
            **_feed_paths(),
            **_public_paths(),
        },
        "components": components(),
    }


# ------------------------------------------------------------------ building blocks

_AUTH_401 = ("unauthenticated", "token_expired", "invalid_token")
_BODY_400 = ("invalid_json", "invalid_request", "invalid_text")
_TURN_503 = (
    "auth_unavailable",
    "server_busy",
    "shutting_down",
    "storage_unavailable",
    "database_unavailable",
)
_REST_503 = ("auth_unavailable", "persistence_unavailable", "database_unavailable")
_FEED_503 = ("unavailable", "shutting_down", "auth_unavailable")
_PHRASES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    429: "Quota exceeded",
    500: "Internal error",
    502: "The upstream failed",
    503: "Unavailable",
}


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _ok(description: str, content: Json) -> Json:
    return {"description": description, "content": content}


def _error(status: int, codes: Codes) -> Json:
    """An error response whose `error.code` is one of `codes` (any code when None)."""
    schema = ref("Error")
    described = _PHRASES[status]
    if codes is not None:
        only = {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}}
        schema = {"allOf": [schema, only]}
        described += ": " + ", ".join(f"`{c}`" for c in codes)
    response: Json = {"description": described, "content": _json(schema)}
    if status in (429, 503):
        # Always sent with a 429; with a 503 where the gateway knows when to come back.
        response["headers"] = {"Retry-After": _retry_after(required=status == 429)}
    return response


def _retry_after(*, required: bool) -> Json:
    seconds = {"type": "string", "pattern": "^[0-9]+$"}
    return {"description": "Seconds to wait", "required": required, "schema": seconds}


def _errors(by_status: dict[int, Codes] | None = None) -> Json:
    """The error responses, `{status: codes}`; every operation may answer a 500."""
    responses = {str(status): _error(status, codes) for status, codes in (by_status or {}).items()}
    return {**responses, "500": _error(500, None)}


def _body(schema_name: str, example: Json | None = None) -> Json:
    media: Json = {"schema": ref(schema_name)}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def _query(name: str, schema: Json, description: str) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _session_id() -> Json:
    return {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"},
        "description": "A session id; another user's session answers 404 like a missing one",
    }


def _sse(event_schema: str) -> Json:
    return {"text/event-stream": {"schema": ref(event_schema)}}


def _public(operation: Json) -> Json:
    return {**operation, "security": []}


# ------------------------------------------------------------------ paths


def _chat_paths() -> Json:
    chat = {
        "summary": "One chat turn as server-sent events",
        "description": (
            "Opens (or resumes, with `session_id`) the caller's session and streams the turn: "
            "`session.created`, then the realtime protocol's events (`event:` is the type, "
            "`id:` the sequence, `data:` the JSON event). A turn refused by a quota after the "
            "stream began ends with `rate_limited`; a client that reads too slowly gets an "
            "`error` event (`slow_consumer`) in place of the usual end. With `voice` the reply "
            "is also spoken (`response.audio`). What reaches the session meanwhile comes too "
            "(`assessment.created`, `coaching.feedback`)."
        ),
        "operationId": "chat",
        "requestBody": _body("ChatRequest", {"message": "How do I open a hard conversation?"}),
        "responses": {
            "200": _ok("The turn's events", _sse("ChatStreamEvent")),
            **_errors(
                {
                    400: (*_BODY_400, "empty_text", "text_too_long"),
                    401: _AUTH_401,
                    404: ("session_not_found",),
                    413: ("body_too_large",),
                    429: ("rate_limited",),
                    503: _TURN_503,
                }
            ),
        },
    }
    return {"/v1/chat": {"post": chat}}


def _openai_paths() -> Json:
    completions = {
        "summary": "OpenAI-compatible chat completion",
        "description": (
            "The official `openai` SDK works unchanged, with a gateway JWT as its API key. The "
            "last message must be the user's, or the results of the tool calls that followed "
            "it; the earlier ones are its context. A client's `tools` go to the model, whose "
            "calls come back as `tool_calls` (`finish_reason: tool_calls`). `stream: true` "
            "answers `chat.completion.chunk` events ending with `data: [DONE]`; an error after "
            "the first chunk is an `error` object in a chunk. A turn that fails before its "
            "first token answers 502, or 503 when retrying may help."
        ),
        "operationId": "createChatCompletion",
        "requestBody": _body(
            "ChatCompletionRequest",
            {"model": "coach", "messages": [{"role": "user", "content": "Help me pitch."}]},
        ),
        "responses": {
            "200": _ok(
                "The completion, or its chunks with `stream: true`",
                {**_json(ref("ChatCompletion")), **_sse("ChatCompletionStreamEvent")},
            ),
            **_errors(
                {
                    400: (*_BODY_400, "empty_text", "text_too_long", "unsupported_parameter"),
                    401: _AUTH_401,
                    404: ("model_not_found",),
                    413: ("body_too_large",),
                    429: ("rate_limited",),
                    502: None,
                    503: None,
                }
            ),
        },
    }
    models = {
        "summary": "Models a chat completion may name (`coach`: the gateway's own route)",
        "operationId": "listModels",
        "responses": {
            "200": _ok("The models", _json(ref("ModelList"))),
            **_errors({401: _AUTH_401, 503: ("auth_unavailable",)}),
        },
    }
    return {"/v1/chat/completions": {"post": completions}, "/v1/models": {"get": models}}


_SPEECH_CONTENT = {
    media: {"schema": {"type": "string", "contentMediaType": media}}
    for media in ("audio/mpeg", "audio/wav", "audio/pcm")
}


def _audio_paths() -> Json:
    return {
        "/v1/audio/transcriptions": {"post": _transcriptions()},
        "/v1/audio/speech": {"post": _speech()},
    }


def _transcriptions() -> Json:
    return {
        "summary": "OpenAI-compatible speech to text",
        "description": "Charged to the caller's audio seconds per day.",
        "operationId": "createTranscription",
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": ref("TranscriptionRequest")}},
        },
        "responses": {
            "200": _ok(
                "The transcript: JSON, or plain text with `response_format=text`",
                {
                    **_json(ref("Transcription")),
                    "text/plain": {"schema": STR},
                },
            ),
            **_errors(
                {
                    400: (
                        "invalid_request",
                        "invalid_form",
                        "audio_decode_error",
                        "audio_too_long",
                    ),
                    401: _AUTH_401,
                    413: ("file_too_large",),
                    429: ("rate_limited",),
                    503: None,
                }
            ),
        },
    }


def _speech() -> Json:
    return {
        "summary": "OpenAI-compatible text to speech",
        "description": "Streamed as it is synthesized; charged to the caller's audio seconds.",
        "operationId": "createSpeech",
        "requestBody": _body("SpeechRequest", {"input": "Slow down.", "response_format": "wav"}),
        "responses": {
            "200": _ok("The audio, in `response_format`", _SPEECH_CONTENT),
            **_errors(
                {
                    400: _BODY_400,
                    401: _AUTH_401,
                    413: ("body_too_large",),
                    429: ("rate_limited",),
                    503: None,
                }
            ),
        },
    }


def _page_params(cursor: Json) -> list[Json]:
    limit = {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    return [
        _query("limit", limit, "Items per page, newest first"),
        _query("before", cursor, "`next_before` of the previous page"),
    ]


def _read(summary: str, schema_name: str, errors: dict[int, Codes] | None = None) -> Json:
    """A REST read of the caller's own data."""
    return {
        "summary": summary,
        "responses": {
            "200": _ok(summary, _json(ref(schema_name))),
            **_errors({401: _AUTH_401, **(errors or {}), 503: _REST_503}),
        },
    }


def _rest_paths() -> Json:
    id_cursor = {"type": "string", "pattern": "^[0-9]{1,18}$"}
    pages = ("invalid_limit", "invalid_cursor")
    missing = ("session_not_found",)
    sessions = _read("The caller's sessions", "SessionPage", {400: pages})
    session = _read("One of the caller's sessions", "Session", {404: missing})
    interactions = _read("A session's turns", "InteractionPage", {400: pages, 404: missing})
    assessments = _read("A session's assessments", "AssessmentPage", {400: pages, 404: missing})
    progress = _read("The caller's level on each focus", "Progress")
    sessions["parameters"] = _page_params({"type": "string", "maxLength": 256})
    for operation in (interactions, assessments):
        operation["parameters"] = _page_params(id_cursor)
    by_id = {"parameters": [_session_id()]}
    return {
        "/v1/sessions": {"get": sessions},
        "/v1/sessions/{session_id}": {**by_id, "get": session},
        "/v1/sessions/{session_id}/interactions": {**by_id, "get": interactions},
        "/v1/sessions/{session_id}/assessments": {**by_id, "get": assessments},
        "/v1/progress": {"get": progress},
    }


def _focus_paths() -> Json:
    drills = _read("The drill catalog (no database needed)", "DrillList", {400: ("unknown_focus",)})
    drills["parameters"] = [_query("focus_id", STR, "Only the drills of this focus")]
    choose = _read("The caller's active focuses, as chosen", "ActiveFocuses")
    choose["description"] = "At most 3 distinct known focus ids, in order; a 400 changes nothing."
    choose["requestBody"] = _body("FocusChoice", {"focus_ids": ["pacing", "filler_words"]})
    refused = (*_BODY_400, "unknown_focus")
    choose["responses"] |= _errors({400: refused, 413: ("body_too_large",), 503: _REST_503})
    return {
        "/v1/drills": {"get": drills},
        "/v1/focuses": {"get": _read("The focuses a user may choose", "FocusList")},
        "/v1/progress/focuses": {"put": choose},
    }


def _skill_paths() -> Json:
    """The coaching skills: never a 5xx when the model fails (`source: "fallback"`)."""
    refresh = _query("refresh", BOOL, "Ask the model again instead of answering from the cache")
    skill_503 = ("auth_unavailable", "database_unavailable")
    feedback = _read("Feedback on a piece of practice", "FeedbackAnswer", {429: ("rate_limited",)})
    feedback["description"] = (
        "The same subject and observations within the cache window answer from the cache "
        "(`source: cache`). `observations` is at most 16 KB of JSON."
    )
    feedback["parameters"] = [refresh]
    feedback["requestBody"] = _body(
        "FeedbackRequest",
        {"subject": {"kind": "take", "id": "take-1"}, "observations": {"tempo_drift": 0.2}},
    )
    feedback["responses"] |= _errors(
        {400: _BODY_400, 413: ("body_too_large",), 429: ("rate_limited",), 503: skill_503}
    )
    practice = _read("Today's practice recommendation", "PracticeAnswer")
    practice["description"] = "Built from the caller's focus levels and recent assessments."
    practice["parameters"] = [refresh]
    practice["responses"] |= _errors(
        {400: ("invalid_request",), 429: ("rate_limited",), 503: skill_503}
    )
    return {
        "/v1/feedback": {"post": feedback},
        "/v1/recommendations/practice": {"get": practice},
    }


def _insight_paths() -> Json:
    """Insights of the `[insights.TYPE]` types: never a 5xx when the model fails."""
    listed = _read("Every insight type with the caller's latest insight of it", "InsightList")
    listed["description"] = "`latest` is null for a type the caller has no insight of yet."
    kind = {
        "name": "type",
        "in": "path",
        "required": True,
        "schema": STR,
        "example": "daily_summary",
        "description": "An insight type of `[insights.TYPE]`",
    }
    refresh = _query("refresh", BOOL, "Make a new one instead of answering from the cache")
    made = _read("An insight of one type, fresh or cached", "InsightAnswer")
    made["description"] = (
        "Made from the caller's facts (also returned); cached for the type's `ttl_h` while the "
        "facts stay the same. A new one is pushed as `insight.created` to the caller's live "
        "sessions. An unknown type is a 404 whose message lists the known ones."
    )
    made["parameters"] = [kind, refresh]
    made["responses"] |= _errors(
        {
            400: ("invalid_request",),
            404: ("unknown_insight_type",),
            429: ("rate_limited",),
            503: ("auth_unavailable", "database_unavailable"),
        }
    )
    return {"/v1/insights": {"get": listed}, "/v1/insights/{type}": {"post": made}}


def _agent_paths() -> Json:
    """The agent's proposed changes (confirm-before-write) and the memories it keeps."""
    statuses = {"enum": ["pending", "applied", "rejected", "expired"], "default": "pending"}
    listed = _read("The caller's changes in one status, newest first", "ChangeList")
    listed["parameters"] = [_query("status", statuses, "Which changes")]
    listed["responses"] |= _errors({400: ("invalid_request",), 503: _REST_503})
    change_id = {
        "name": "change_id",
        "in": "path",
        "required": True,
        "schema": STR,
        "description": "A change id; another user's change answers 404 like a missing one",
    }
    decided = ("change_already_decided",)
    accept = _read("Apply a pending change, once", "ChangeAnswer", {404: ("change_not_found",)})
    accept["description"] = (
        "Writes what the change says (new active focuses, or a memory) in the same transaction "
        "that marks it applied. A change decided already is a 409 and nothing is applied again; "
        "an expired change is a 404."
    )
    accept["responses"] |= _errors({409: (*decided, "change_invalid"), 503: _REST_503})
    reject = _read("Reject a pending change", "ChangeAnswer", {404: ("change_not_found",)})
    reject["responses"] |= _errors({409: decided, 503: _REST_503})
    memory_id = {**change_id, "name": "memory_id", "description": "A memory id"}
    forget = {
        "summary": "Forget one of the caller's memories",
        "responses": {
            "204": {"description": "Forgotten"},
            **_errors({401: _AUTH_401, 404: ("memory_not_found",), 503: _REST_503}),
        },
    }
    return {
        "/v1/changes": {"get": listed},
        "/v1/changes/{change_id}/accept": {"parameters": [change_id], "post": accept},
        "/v1/changes/{change_id}/reject": {"parameters": [change_id], "post": reject},
        "/v1/memories": {"get": _read("What the coach remembers of the caller", "MemoryList")},
        "/v1/memories/{memory_id}": {"parameters": [memory_id], "delete": forget},
    }


def _feed_paths() -> Json:
    resume = [
        _query("last_event_id", {"type": "integer"}, "Resume after this event id"),
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR},
    ]
    session_feed = {
        "summary": "Live feed of one session (its owner, or the `ops` role)",
        "description": "Runs until the client leaves; a reader that falls behind is dropped.",
        "parameters": resume,
        "responses": {
            "200": _ok("The session's events as they happen", _sse("FeedEvent")),
            **_errors({401: _AUTH_401, 404: ("session_not_found",), 503: _FEED_503}),
        },
    }
    metrics = {
        "summary": "Practice metrics from a practice app (like `metrics.push` over WebSocket)",
        "requestBody": _body("MetricsPush", {"metrics": {"words_per_minute": 182}}),
        "responses": {
            "202": _ok("Accepted", _json(ref("MetricsAccepted"))),
            **_errors(
                {
                    400: (*_BODY_400, "invalid_metrics"),
                    401: _AUTH_401,
                    404: ("session_not_found",),
                    413: ("body_too_large",),
                    503: _FEED_503,
                }
            ),
        },
    }
    ops_feed = {
        "summary": "Operators' feed: `ops.snapshot` each interval, `breaker.changed` (`ops` role)",
        "parameters": resume,
        "responses": {
            "200": _ok("Snapshots and breaker changes", _sse("FeedEvent")),
            **_errors({401: _AUTH_401, 403: ("forbidden",), 503: _FEED_503}),
        },
    }
    return {
        "/v1/sessions/{session_id}/events": {"parameters": [_session_id()], "get": session_feed},
        "/v1/sessions/{session_id}/metrics": {"parameters": [_session_id()], "post": metrics},
        "/v1/ops/events": {"get": ops_feed},
    }


def _public_paths() -> Json:
    return {
        "/healthz": {"get": _public(_health())},
        "/readyz": {"get": _public(_ready())},
        "/metrics": {"get": _public(_prometheus())},
        "/openapi.json": {"get": _public(_openapi())},
        "/": {"get": _public(_page("The chat page"))},
        "/ops": {"get": _public(_page("The operators' dashboard"))},
        "/static/{version}/{name}": {"get": _public(_static())},
    }


def _health() -> Json:
    return {
        "summary": "Liveness",
        "responses": {"200": _ok("Alive", _json(ref("Health"))), **_errors()},
    }


def _ready() -> Json:
    readiness = _json(ref("Readiness"))
    return {
        "summary": "Readiness: not draining, database answers, spool not full, a chat target up",
        "responses": {
            "200": _ok("Ready", readiness),
            "503": _ok("Not ready; `checks` and `routes_out` say why", readiness),
            "500": _error(500, None),
        },
    }


def _prometheus() -> Json:
    text = {"text/plain": {"schema": STR}}
    return {
        "summary": "Prometheus metrics (no auth: keep it on an internal network)",
        "responses": {"200": _ok("The exposition text format", text), **_errors()},
    }


def _openapi() -> Json:
    return {
        "summary": "This document",
        "responses": {"200": _ok("OpenAPI 3.1", _json(ref("OpenApiDocument"))), **_errors()},
    }


_ETAG = {"name": "If-None-Match", "in": "header", "required": False, "schema": STR}
_NOT_MODIFIED = {"description": "Not modified: the `If-None-Match` ETag is current"}


def _page(summary: str) -> Json:
    html = {"text/html": {"schema": STR}}
    return {
        "summary": summary,
        "parameters": [_ETAG],
        "responses": {"200": _ok(summary, html), "304": _NOT_MODIFIED, **_errors()},
    }


def _static() -> Json:
    content = {media.split(";")[0]: {"schema": STR} for media in MEDIA_TYPES.values()}
    return {
        "summary": "A page's asset; `version` is a hash of all of them (immutable when current)",
        "parameters": [
            # Any version is served (a stale one without `immutable`): the examples fetch one.
            {"name": "version", "in": "path", "required": True, "schema": STR, "example": "0"},
            {"name": "name", "in": "path", "required": True, "schema": STR, "example": "app.js"},
            _ETAG,
        ],
        "responses": {
            "200": _ok("The asset", content),
            "304": _NOT_MODIFIED,
            **_errors({404: ("not_found",)}),
        },
    }
