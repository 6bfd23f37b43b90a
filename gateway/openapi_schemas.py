"""The components of the OpenAPI document (`gateway.openapi`): the schemas of request and
response bodies, events and errors, the responses any path may answer, the security schemes.

Request bodies are described as the handlers read them (unknown fields are ignored, as the
OpenAI SDKs send more than the gateway reads); responses as the handlers write them.
"""

from __future__ import annotations

from gateway.openapi_coaching import coaching_schemas
from gateway.openapi_types import BOOL, INT, NUM, OBJ, STR, Json, array, nullable, obj, ref
from streams.events import MAX_TEXT_CHARS

__all__ = ["components"]


def components() -> Json:
    return {
        "schemas": {
            **_error_schemas(),
            **_chat_schemas(),
            **_event_schemas(),
            **_openai_schemas(),
            **_audio_schemas(),
            **_rest_schemas(),
            **coaching_schemas(),
            **_other_schemas(),
        },
        "responses": {
            "NotFound": {
                "description": "No route at this path (`not_found`), on every path",
                "content": {"application/json": {"schema": ref("Error")}},
            },
            "MethodNotAllowed": {
                "description": "A method the path does not list (`method_not_allowed`), with "
                "`Allow` naming those it does",
                "headers": {"Allow": {"schema": STR, "required": True}},
                "content": {"application/json": {"schema": ref("Error")}},
            },
        },
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "accessToken": {
                "type": "apiKey",
                "in": "query",
                "name": "access_token",
                "description": "The same JWT, where a header cannot be set (EventSource)",
            },
        },
    }


def _error_schemas() -> Json:
    kinds = [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "conflict_error",
        "rate_limit_error",
        "service_unavailable",
        "api_error",
    ]
    detail = obj(
        {
            "code": {**STR, "description": "What went wrong, for a program to act on"},
            "message": {**STR, "description": "The same in words, for a person"},
            "retryable": {**BOOL, "description": "Whether the same request may succeed later"},
            "type": {"enum": kinds, "description": "OpenAI's error type, for the SDKs"},
        }
    )
    detail["additionalProperties"] = False
    error = {**obj({"error": detail}), "additionalProperties": False}
    return {"Error": error}


def _chat_schemas() -> Json:
    message = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TEXT_CHARS,
        "pattern": "\\S",
        "description": "The user's message: some text besides white space",
    }
    request = obj(
        {"message": message},
        {
            "session_id": {**nullable("string"), "description": "Resume this session of yours"},
            "voice": {**nullable("boolean"), "description": "Also speak the reply"},
        },
    )
    return {"ChatRequest": request}


def _sse_event(types: list[str], data: Json) -> Json:
    """One server-sent event: its `event:` name, `id:` and JSON `data:`."""
    return obj(
        {
            "event": {"enum": types},
            "data": {**STR, "contentMediaType": "application/json", "contentSchema": data},
        },
        {"id": {"type": "string", "pattern": "^[0-9]+$"}},
    )


def _typed(name: str, required: Json, optional: Json | None = None) -> Json:
    """An event object: `type` is `name`, then its fields."""
    return obj({"type": {"const": name}, **required}, optional)


_CHAT_EVENTS = {
    "session.created": "SessionCreatedEvent",
    "response.started": "ResponseStartedEvent",
    "response.delta": "ResponseDeltaEvent",
    "response.tool_call": "ResponseToolCallEvent",
    "response.audio": "ResponseAudioEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.failed": "ResponseFailedEvent",
    "rate_limited": "RateLimitedEvent",
    "error": "ErrorEvent",
    # Delivered to every connection of the session while the stream is open.
    "assessment.created": "AssessmentCreatedEvent",
    "coaching.feedback": "CoachingFeedbackEvent",
    "insight.created": "InsightCreatedEvent",  # to every live session of the user
}


def _event_schemas() -> Json:
    chat = {"oneOf": [ref(name) for name in _CHAT_EVENTS.values()]}
    feed = {"type": "object", "required": ["type"], "properties": {"type": STR}}
    return {
        **_turn_events(),
        "ChatStreamEvent": _sse_event(list(_CHAT_EVENTS), chat),
        "FeedEvent": {
            **_sse_event_any(feed),
            "description": "A realtime event of the session, or on the ops feed `ops.snapshot` "
            "and `breaker.changed` (docs/protocol.md)",
        },
    }


def _turn_events() -> Json:
    turn = {"turn_id": STR}
    fault = obj({"code": STR, "message": STR, "retryable": BOOL})
    usage = obj({"input_tokens": INT, "output_tokens": INT})
    return {
        "SessionCreatedEvent": _typed(
            "session.created", {"session_id": STR, "user_id": STR, "limits": OBJ, "resumed": BOOL}
        ),
        "ResponseStartedEvent": _typed("response.started", {**turn, "provider": STR, "model": STR}),
        "ResponseDeltaEvent": _typed("response.delta", {**turn, "text": STR}),
        "ResponseToolCallEvent": _typed(
            "response.tool_call", {**turn, "call_id": STR, "name": STR, "arguments": STR}
        ),
        "ResponseAudioEvent": _typed(
            "response.audio",
            {
                **turn,
                "seq": INT,
                "format": {"enum": ["mp3", "wav", "pcm16"]},
                "sample_rate": INT,
                "audio": {**STR, "contentEncoding": "base64"},
            },
        ),
        "ResponseCompletedEvent": _typed(
            "response.completed",
            {
                **turn,
                "text": STR,
                "finish_reason": STR,
                "usage": usage,
                "timings": {"type": "object", "additionalProperties": nullable("number")},
                "provider": STR,
                "model": STR,
                "fallbacks": array(OBJ),
                "stored": {"enum": ["db", "spool", "none"]},
            },
        ),
        "ResponseFailedEvent": _typed(
            "response.failed", {**turn, "error": fault, "partial_text": STR}
        ),
        "RateLimitedEvent": _typed("rate_limited", {"scope": STR, "retry_after_ms": INT}),
        "ErrorEvent": _typed("error", {"code": STR, "message": STR, "retryable": BOOL}),
        "AssessmentCreatedEvent": _typed("assessment.created", {"assessment": ref("Assessment")}),
        "InsightCreatedEvent": _typed("insight.created", {"insight": ref("Insight")}),
        "CoachingFeedbackEvent": _typed(
            "coaching.feedback",
            {
                "text": STR,
                "weakest_metric": STR,
                "metrics": {"type": "object", "additionalProperties": NUM},
            },
        ),
    }


def _sse_event_any(data: Json) -> Json:
    event = _sse_event([], data)
    event["properties"]["event"] = STR
    return event


def _openai_schemas() -> Json:
    model = obj({"id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR})
    chunk_json = {"oneOf": [ref("ChatCompletionChunk"), ref("Error")]}
    chunk_data = {**STR, "contentMediaType": "application/json", "contentSchema": chunk_json}
    stream_data = {"anyOf": [{"const": "[DONE]"}, chunk_data]}
    return {
        "ChatCompletionRequest": _completion_request(),
        **_completions(),
        "ChatCompletionStreamEvent": obj({"data": stream_data}, {"event": {"const": "message"}}),
        "ModelList": obj({"object": {"const": "list"}, "data": array(model)}),
    }


def _completion_request() -> Json:
    part = obj({"type": STR}, {"text": STR})
    content = {"anyOf": [STR, array(part), {"type": "null"}]}
    roles = {"enum": ["system", "developer", "user", "assistant", "tool"]}
    message = obj(
        {"role": roles},
        {
            "content": content,
            "tool_calls": {"anyOf": [array(_tool_call()), {"type": "null"}]},
            "tool_call_id": {**STR, "description": "`role: tool`: the call it answers"},
        },
    )
    positive = {"type": ["integer", "null"], "minimum": 1}
    request = obj(
        {"messages": {**array(message), "minItems": 1}},
        {
            "model": {
                **nullable("string"),
                "description": "`coach` (or none): the gateway's route",
            },
            "stream": nullable("boolean"),
            "stream_options": {
                "anyOf": [obj({}, {"include_usage": nullable("boolean")}), {"type": "null"}]
            },
            "max_tokens": positive,
            "max_completion_tokens": positive,
            "n": {"enum": [1, None]},
            **_tool_fields(),
        },
    )
    request["description"] = "`functions` and `function_call` (legacy) are refused: use `tools`"
    return request


def _tool_call(*, indexed: bool = False) -> Json:
    """A call the model made, as OpenAI writes it (in a stream's delta, with its `index`)."""
    function = obj({"name": STR, "arguments": {**STR, "description": "JSON text, unchecked"}})
    call = {"id": STR, "type": {"const": "function"}, "function": function}
    return obj({"index": INT, **call} if indexed else call)


def _tool_fields() -> Json:
    """A client's own tools, passed to the model; the gateway runs none of them."""
    name = {**STR, "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
    function = obj(
        {"name": name},
        {"description": STR, "parameters": {**OBJ, "description": "JSON schema of an object"}},
    )
    tool = obj({"type": {"const": "function"}, "function": function})
    named = obj({"type": {"const": "function"}, "function": obj({"name": name})})
    return {
        "tools": {"anyOf": [{**array(tool), "maxItems": 128}, {"type": "null"}]},
        "tool_choice": {
            "anyOf": [{"enum": ["auto", "none", "required"]}, named, {"type": "null"}],
            "description": "Only with `tools`; a named function must be one of them",
        },
        "parallel_tool_calls": {**nullable("boolean"), "description": "Accepted; not passed on"},
    }


def _completions() -> Json:
    """`chat.completion` and `chat.completion.chunk`."""
    usage = obj({"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT})
    finish = nullable("string")
    head = {"id": STR, "created": INT, "model": STR}
    reply = obj(
        {"role": {"const": "assistant"}, "content": nullable("string")},
        {"tool_calls": array(_tool_call())},
    )
    choice = obj({"index": INT, "message": reply, "finish_reason": finish})
    delta = obj({}, {"role": STR, "content": STR, "tool_calls": array(_tool_call(indexed=True))})
    chunk_choice = obj({"index": INT, "delta": delta, "finish_reason": finish})
    return {
        "ChatCompletion": obj(
            {
                **head,
                "object": {"const": "chat.completion"},
                "choices": array(choice),
                "usage": usage,
            }
        ),
        "ChatCompletionChunk": obj(
            {**head, "object": {"const": "chat.completion.chunk"}, "choices": array(chunk_choice)},
            {"usage": usage},
        ),
    }


def _audio_schemas() -> Json:
    formats = ["json", "text", "verbose_json"]
    transcription = obj(
        {"file": {**STR, "format": "binary", "contentMediaType": "application/octet-stream"}},
        {
            "model": {**STR, "description": "Ignored: the gateway's speech model answers"},
            "response_format": {"enum": formats, "default": "json"},
        },
    )
    segment = obj({"id": INT, "start": NUM, "end": NUM, "text": STR})
    verbose = obj(
        {
            "task": {"const": "transcribe"},
            "language": STR,
            "duration": NUM,
            "text": STR,
            "segments": array(segment),
        }
    )
    speech = obj(
        {"input": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "\\S"}},
        {
            "model": {**STR, "description": "Ignored: the gateway's voice speaks"},
            "voice": {**STR, "description": "Ignored: the gateway's voice speaks"},
            "response_format": {"anyOf": [{"enum": ["mp3", "wav", "pcm"]}, {"type": "null"}]},
        },
    )
    return {
        "TranscriptionRequest": transcription,
        "Transcription": {"anyOf": [obj({"text": STR}), verbose]},
        "SpeechRequest": speech,
    }


def _page(item: str) -> Json:
    return obj({"data": array(ref(item)), "next_before": nullable("string")})


def _rest_schemas() -> Json:
    when = {"type": "string", "format": "date-time"}
    session = obj(
        {
            "id": STR,
            "user_id": STR,
            "open": BOOL,
            "opened_at": when,
            "last_active_at": when,
            "closed_at": {"type": ["string", "null"], "format": "date-time"},
            "interaction_count": INT,
            "summary_status": nullable("string"),
        }
    )
    return {
        "Session": session,
        "SessionPage": _page("Session"),
        "Interaction": _interaction(when),
        "InteractionPage": _page("Interaction"),
        "Assessment": _assessment(when),
        "AssessmentPage": _page("Assessment"),
        "Progress": obj({"user_id": STR, "data": array(_focus_progress())}),
    }


def _interaction(when: Json) -> Json:
    ms = nullable("number")
    return obj(
        {
            "id": STR,
            "session_id": STR,
            "turn_id": STR,
            "request_id": STR,
            "channel": STR,
            "audio_in_ms": INT,
            "user_text": STR,
            "reply_text": STR,
            "status": STR,
            "finish_reason": STR,
            "error_code": nullable("string"),
            "usage": obj({"input_tokens": INT, "output_tokens": INT}),
            "timings": obj(
                {"ttft_ms": ms, "upstream_ttft_ms": ms, "total_ms": NUM, "first_audio_ms": ms}
            ),
            "provider": nullable("string"),
            "model": nullable("string"),
            "fallbacks": array(OBJ),
            "focus_ids": array(STR),
            "assess_state": STR,
            "created_at": when,
        }
    )


def _assessment(when: Json) -> Json:
    return obj(
        {
            "id": STR,
            "job_id": STR,
            "user_id": STR,
            "session_id": STR,
            "interaction_ids": array(STR),
            "focus_id": STR,
            "kind": STR,
            "category": STR,
            "score": nullable("integer"),
            "explanation": STR,
            "errors": array(OBJ),
            "tags": array(STR),
            "group_id": nullable("string"),
            "rubric_version": STR,
            "created_at": when,
        }
    )


def _focus_progress() -> Json:
    return obj(
        {
            "focus_id": STR,
            "name": STR,
            "active": BOOL,
            "samples": INT,
            "ema": nullable("number"),
            "level": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
            "band": {"enum": ["novice", "developing", "mastery", None]},
        }
    )


def _other_schemas() -> Json:
    metrics = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 32,
        "propertyNames": {"maxLength": 64},
        "additionalProperties": NUM,
    }
    return {
        "MetricsPush": obj({"metrics": metrics}),
        "MetricsAccepted": obj({"accepted": {"const": True}, "feedback_scheduled": BOOL}),
        "Health": obj({"status": {"const": "ok"}}),
        "Readiness": obj(
            {
                "ready": BOOL,
                "checks": {"type": "object", "additionalProperties": STR},
                "routes_out": array(STR),
            }
        ),
        "OpenApiDocument": obj({"openapi": STR, "info": OBJ, "paths": OBJ}),
    }
