"""`GET /openapi.json`: the OpenAPI 3.1 document of every HTTP route of the gateway.

The document is data written beside the handlers it describes (the schemas of its bodies are in
`gateway.openapi_schemas`, its building blocks in `gateway.openapi_parts`, the coaching skills'
and the agent's paths in `gateway.openapi_coaching`), built once with the app. It is kept true by
tests/gateway/test_openapi.py: it lists exactly the app's HTTP routes, and schemathesis drives a
running gateway from it (no 5xx; every status, content type, body and header as documented).
Each error response names the codes the route answers with, so a new code fails that test until
it is documented. The WebSocket `/v1/realtime` is not an HTTP operation: the description points
to docs/protocol.md.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.openapi_coaching import agent_paths, focus_paths, insight_paths, skill_paths
from gateway.openapi_parts import (
    AUTH_401,
    BODY_400,
    FEED_503,
    TURN_503,
    Json,
    error_response,
    errors,
    json_content,
    ok,
    page_params,
    public,
    query_param,
    read,
    request_body,
    session_id_param,
    sse_content,
)
from gateway.openapi_schemas import components
from gateway.openapi_types import STR, ref
from gateway.pages import MEDIA_TYPES

__all__ = ["openapi_document", "openapi_routes"]

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
            **focus_paths(),
            **skill_paths(),
            **insight_paths(),
            **agent_paths(),
            **_feed_paths(),
            **_public_paths(),
        },
        "components": components(),
    }


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
        "requestBody": request_body(
            "ChatRequest", {"message": "How do I open a hard conversation?"}
        ),
        "responses": {
            "200": ok("The turn's events", sse_content("ChatStreamEvent")),
            **errors(
                {
                    400: (*BODY_400, "empty_text", "text_too_long"),
                    401: AUTH_401,
                    404: ("session_not_found",),
                    413: ("body_too_large",),
                    429: ("rate_limited",),
                    503: TURN_503,
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
        "requestBody": request_body(
            "ChatCompletionRequest",
            {"model": "coach", "messages": [{"role": "user", "content": "Help me pitch."}]},
        ),
        "responses": {
            "200": ok(
                "The completion, or its chunks with `stream: true`",
                {**json_content(ref("ChatCompletion")), **sse_content("ChatCompletionStreamEvent")},
            ),
            **errors(
                {
                    400: (*BODY_400, "empty_text", "text_too_long", "unsupported_parameter"),
                    401: AUTH_401,
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
            "200": ok("The models", json_content(ref("ModelList"))),
            **errors({401: AUTH_401, 503: ("auth_unavailable",)}),
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
            "200": ok(
                "The transcript: JSON, or plain text with `response_format=text`",
                {
                    **json_content(ref("Transcription")),
                    "text/plain": {"schema": STR},
                },
            ),
            **errors(
                {
                    400: (
                        "invalid_request",
                        "invalid_form",
                        "audio_decode_error",
                        "audio_too_long",
                    ),
                    401: AUTH_401,
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
        "requestBody": request_body(
            "SpeechRequest", {"input": "Slow down.", "response_format": "wav"}
        ),
        "responses": {
            "200": ok("The audio, in `response_format`", _SPEECH_CONTENT),
            **errors(
                {
                    400: BODY_400,
                    401: AUTH_401,
                    413: ("body_too_large",),
                    429: ("rate_limited",),
                    503: None,
                }
            ),
        },
    }


def _rest_paths() -> Json:
    id_cursor = {"type": "string", "pattern": "^[0-9]{1,18}$"}
    pages = ("invalid_limit", "invalid_cursor")
    missing = ("session_not_found",)
    sessions = read("The caller's sessions", "SessionPage", {400: pages})
    session = read("One of the caller's sessions", "Session", {404: missing})
    interactions = read("A session's turns", "InteractionPage", {400: pages, 404: missing})
    assessments = read("A session's assessments", "AssessmentPage", {400: pages, 404: missing})
    progress = read("The caller's level on each focus", "Progress")
    sessions["parameters"] = page_params({"type": "string", "maxLength": 256})
    for operation in (interactions, assessments):
        operation["parameters"] = page_params(id_cursor)
    by_id = {"parameters": [session_id_param()]}
    return {
        "/v1/sessions": {"get": sessions},
        "/v1/sessions/{session_id}": {**by_id, "get": session},
        "/v1/sessions/{session_id}/interactions": {**by_id, "get": interactions},
        "/v1/sessions/{session_id}/assessments": {**by_id, "get": assessments},
        "/v1/progress": {"get": progress},
    }


def _feed_paths() -> Json:
    resume = [
        query_param("last_event_id", {"type": "integer"}, "Resume after this event id"),
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR},
    ]
    session_feed = {
        "summary": "Live feed of one session (its owner, or the `ops` role)",
        "description": "Runs until the client leaves; a reader that falls behind is dropped.",
        "parameters": resume,
        "responses": {
            "200": ok("The session's events as they happen", sse_content("FeedEvent")),
            **errors({401: AUTH_401, 404: ("session_not_found",), 503: FEED_503}),
        },
    }
    metrics = {
        "summary": "Practice metrics from a practice app (like `metrics.push` over WebSocket)",
        "requestBody": request_body("MetricsPush", {"metrics": {"words_per_minute": 182}}),
        "responses": {
            "202": ok("Accepted", json_content(ref("MetricsAccepted"))),
            **errors(
                {
                    400: (*BODY_400, "invalid_metrics"),
                    401: AUTH_401,
                    404: ("session_not_found",),
                    413: ("body_too_large",),
                    503: FEED_503,
                }
            ),
        },
    }
    ops_feed = {
        "summary": "Operators' feed: `ops.snapshot` each interval, `breaker.changed` (`ops` role)",
        "parameters": resume,
        "responses": {
            "200": ok("Snapshots and breaker changes", sse_content("FeedEvent")),
            **errors({401: AUTH_401, 403: ("forbidden",), 503: FEED_503}),
        },
    }
    return {
        "/v1/sessions/{session_id}/events": {
            "parameters": [session_id_param()],
            "get": session_feed,
        },
        "/v1/sessions/{session_id}/metrics": {"parameters": [session_id_param()], "post": metrics},
        "/v1/ops/events": {"get": ops_feed},
    }


def _public_paths() -> Json:
    return {
        "/healthz": {"get": public(_health())},
        "/readyz": {"get": public(_ready())},
        "/metrics": {"get": public(_prometheus())},
        "/openapi.json": {"get": public(_openapi())},
        "/": {"get": public(_page("The chat page"))},
        "/ops": {"get": public(_page("The operators' dashboard"))},
        "/static/{version}/{name}": {"get": public(_static())},
    }


def _health() -> Json:
    return {
        "summary": "Liveness",
        "responses": {"200": ok("Alive", json_content(ref("Health"))), **errors()},
    }


def _ready() -> Json:
    readiness = json_content(ref("Readiness"))
    return {
        "summary": "Readiness: not draining, database answers, spool not full, a chat target up",
        "responses": {
            "200": ok("Ready", readiness),
            "503": ok("Not ready; `checks` and `routes_out` say why", readiness),
            "500": error_response(500, None),
        },
    }


def _prometheus() -> Json:
    text = {"text/plain": {"schema": STR}}
    return {
        "summary": "Prometheus metrics (no auth: keep it on an internal network)",
        "responses": {"200": ok("The exposition text format", text), **errors()},
    }


def _openapi() -> Json:
    return {
        "summary": "This document",
        "responses": {"200": ok("OpenAPI 3.1", json_content(ref("OpenApiDocument"))), **errors()},
    }


_ETAG = {"name": "If-None-Match", "in": "header", "required": False, "schema": STR}
_NOT_MODIFIED = {"description": "Not modified: the `If-None-Match` ETag is current"}


def _page(summary: str) -> Json:
    html = {"text/html": {"schema": STR}}
    return {
        "summary": summary,
        "parameters": [_ETAG],
        "responses": {"200": ok(summary, html), "304": _NOT_MODIFIED, **errors()},
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
            "200": ok("The asset", content),
            "304": _NOT_MODIFIED,
            **errors({404: ("not_found",)}),
        },
    }
