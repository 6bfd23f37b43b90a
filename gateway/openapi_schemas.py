"""The components of the OpenAPI document (`gateway.openapi`): the schemas of request and
response bodies, events and errors, the responses any path may answer, the security schemes.

Request bodies are described as the handlers read them (unknown fields are ignored, as the
OpenAI SDKs send more than the gateway reads); responses as the handlers write them.
"""

from __future__ import annotations

from typing import Any

from streams.events import MAX_TEXT_CHARS

__all__ = ["BOOL", "STR", "components", "ref"]

Json = dict[str, Any]

STR: Json = {"type": "string"}
INT: Json = {"type": "integer"}
NUM: Json = {"type": "number"}
BOOL: Json = {"type": "boolean"}
OBJ: Json = {"type": "object"}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(kind: str) -> Json:
    return {"type": [kind, "null"]}


def _obj(required: Json, optional: Json | None = None) -> Json:
    """An object with the `required` properties, and the `optional` ones."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def _array(items: Json) -> Json:
    return {"type": "array", "items": items}


def components() -> Json:
    return {
        "schemas": {
            **_error_schemas(),
            **_chat_schemas(),
            **_event_schemas(),
            **_openai_schemas(),
            **_audio_schemas(),
            **_rest_schemas(),
            **_focus_schemas(),
            **_skill_schemas(),
            **_insight_schemas(),
            **_agent_schemas(),
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
    detail = _obj(
        {
            "code": {**STR, "description": "What went wrong, for a program to act on"},
            "message": {**STR, "description": "The same in words, for a person"},
            "retryable": {**BOOL, "description": "Whether the same request may succeed later"},
            "type": {"enum": kinds, "description": "OpenAI's error type, for the SDKs"},
        }
    )
    detail["additionalProperties"] = False
    error = {**_obj({"error": detail}), "additionalProperties": False}
    return {"Error": error}


def _chat_schemas() -> Json:
    message = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TEXT_CHARS,
        "pattern": "\\S",
        "description": "The user's message: some text besides white space",
    }
    request = _obj(
        {"message": message},
        {
            "session_id": {**_null("string"), "description": "Resume this session of yours"},
            "voice": {**_null("boolean"), "description": "Also speak the reply"},
        },
    )
    return {"ChatRequest": request}


def _sse_event(types: list[str], data: Json) -> Json:
    """One server-sent event: its `event:` name, `id:` and JSON `data:`."""
    return _obj(
        {
            "event": {"enum": types},
            "data": {**STR, "contentMediaType": "application/json", "contentSchema": data},
        },
        {"id": {"type": "string", "pattern": "^[0-9]+$"}},
    )


def _typed(name: str, required: Json, optional: Json | None = None) -> Json:
    """An event object: `type` is `name`, then its fields."""
    return _obj({"type": {"const": name}, **required}, optional)


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
    fault = _obj({"code": STR, "message": STR, "retryable": BOOL})
    usage = _obj({"input_tokens": INT, "output_tokens": INT})
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
                "timings": {"type": "object", "additionalProperties": _null("number")},
                "provider": STR,
                "model": STR,
                "fallbacks": _array(OBJ),
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
    model = _obj({"id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR})
    chunk_json = {"oneOf": [ref("ChatCompletionChunk"), ref("Error")]}
    chunk_data = {**STR, "contentMediaType": "application/json", "contentSchema": chunk_json}
    stream_data = {"anyOf": [{"const": "[DONE]"}, chunk_data]}
    return {
        "ChatCompletionRequest": _completion_request(),
        **_completions(),
        "ChatCompletionStreamEvent": _obj({"data": stream_data}, {"event": {"const": "message"}}),
        "ModelList": _obj({"object": {"const": "list"}, "data": _array(model)}),
    }


def _completion_request() -> Json:
    part = _obj({"type": STR}, {"text": STR})
    content = {"anyOf": [STR, _array(part), {"type": "null"}]}
    roles = {"enum": ["system", "developer", "user", "assistant", "tool"]}
    message = _obj(
        {"role": roles},
        {
            "content": content,
            "tool_calls": {"anyOf": [_array(_tool_call()), {"type": "null"}]},
            "tool_call_id": {**STR, "description": "`role: tool`: the call it answers"},
        },
    )
    positive = {"type": ["integer", "null"], "minimum": 1}
    request = _obj(
        {"messages": {**_array(message), "minItems": 1}},
        {
            "model": {**_null("string"), "description": "`coach` (or none): the gateway's route"},
            "stream": _null("boolean"),
            "stream_options": {
                "anyOf": [_obj({}, {"include_usage": _null("boolean")}), {"type": "null"}]
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
    function = _obj({"name": STR, "arguments": {**STR, "description": "JSON text, unchecked"}})
    call = {"id": STR, "type": {"const": "function"}, "function": function}
    return _obj({"index": INT, **call} if indexed else call)


def _tool_fields() -> Json:
    """A client's own tools, passed to the model; the gateway runs none of them."""
    name = {**STR, "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
    function = _obj(
        {"name": name},
        {"description": STR, "parameters": {**OBJ, "description": "JSON schema of an object"}},
    )
    tool = _obj({"type": {"const": "function"}, "function": function})
    named = _obj({"type": {"const": "function"}, "function": _obj({"name": name})})
    return {
        "tools": {"anyOf": [{**_array(tool), "maxItems": 128}, {"type": "null"}]},
        "tool_choice": {
            "anyOf": [{"enum": ["auto", "none", "required"]}, named, {"type": "null"}],
            "description": "Only with `tools`; a named function must be one of them",
        },
        "parallel_tool_calls": {**_null("boolean"), "description": "Accepted; not passed on"},
    }


def _completions() -> Json:
    """`chat.completion` and `chat.completion.chunk`."""
    usage = _obj({"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT})
    finish = _null("string")
    head = {"id": STR, "created": INT, "model": STR}
    reply = _obj(
        {"role": {"const": "assistant"}, "content": _null("string")},
        {"tool_calls": _array(_tool_call())},
    )
    choice = _obj({"index": INT, "message": reply, "finish_reason": finish})
    delta = _obj({}, {"role": STR, "content": STR, "tool_calls": _array(_tool_call(indexed=True))})
    chunk_choice = _obj({"index": INT, "delta": delta, "finish_reason": finish})
    return {
        "ChatCompletion": _obj(
            {
                **head,
                "object": {"const": "chat.completion"},
                "choices": _array(choice),
                "usage": usage,
            }
        ),
        "ChatCompletionChunk": _obj(
            {**head, "object": {"const": "chat.completion.chunk"}, "choices": _array(chunk_choice)},
            {"usage": usage},
        ),
    }


def _audio_schemas() -> Json:
    formats = ["json", "text", "verbose_json"]
    transcription = _obj(
        {"file": {**STR, "format": "binary", "contentMediaType": "application/octet-stream"}},
        {
            "model": {**STR, "description": "Ignored: the gateway's speech model answers"},
            "response_format": {"enum": formats, "default": "json"},
        },
    )
    segment = _obj({"id": INT, "start": NUM, "end": NUM, "text": STR})
    verbose = _obj(
        {
            "task": {"const": "transcribe"},
            "language": STR,
            "duration": NUM,
            "text": STR,
            "segments": _array(segment),
        }
    )
    speech = _obj(
        {"input": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "\\S"}},
        {
            "model": {**STR, "description": "Ignored: the gateway's voice speaks"},
            "voice": {**STR, "description": "Ignored: the gateway's voice speaks"},
            "response_format": {"anyOf": [{"enum": ["mp3", "wav", "pcm"]}, {"type": "null"}]},
        },
    )
    return {
        "TranscriptionRequest": transcription,
        "Transcription": {"anyOf": [_obj({"text": STR}), verbose]},
        "SpeechRequest": speech,
    }


def _page(item: str) -> Json:
    return _obj({"data": _array(ref(item)), "next_before": _null("string")})


def _rest_schemas() -> Json:
    when = {"type": "string", "format": "date-time"}
    session = _obj(
        {
            "id": STR,
            "user_id": STR,
            "open": BOOL,
            "opened_at": when,
            "last_active_at": when,
            "closed_at": {"type": ["string", "null"], "format": "date-time"},
            "interaction_count": INT,
            "summary_status": _null("string"),
        }
    )
    return {
        "Session": session,
        "SessionPage": _page("Session"),
        "Interaction": _interaction(when),
        "InteractionPage": _page("Interaction"),
        "Assessment": _assessment(when),
        "AssessmentPage": _page("Assessment"),
        "Progress": _obj({"user_id": STR, "data": _array(_focus_progress())}),
    }


def _interaction(when: Json) -> Json:
    ms = _null("number")
    return _obj(
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
            "error_code": _null("string"),
            "usage": _obj({"input_tokens": INT, "output_tokens": INT}),
            "timings": _obj(
                {"ttft_ms": ms, "upstream_ttft_ms": ms, "total_ms": NUM, "first_audio_ms": ms}
            ),
            "provider": _null("string"),
            "model": _null("string"),
            "fallbacks": _array(OBJ),
            "focus_ids": _array(STR),
            "assess_state": STR,
            "created_at": when,
        }
    )


def _assessment(when: Json) -> Json:
    return _obj(
        {
            "id": STR,
            "job_id": STR,
            "user_id": STR,
            "session_id": STR,
            "interaction_ids": _array(STR),
            "focus_id": STR,
            "kind": STR,
            "category": STR,
            "score": _null("integer"),
            "explanation": STR,
            "errors": _array(OBJ),
            "tags": _array(STR),
            "group_id": _null("string"),
            "rubric_version": STR,
            "created_at": when,
        }
    )


def _focus_progress() -> Json:
    return _obj(
        {
            "focus_id": STR,
            "name": STR,
            "active": BOOL,
            "samples": INT,
            "ema": _null("number"),
            "level": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
            "band": {"enum": ["novice", "developing", "mastery", None]},
        }
    )


def _focus_schemas() -> Json:
    focus = _obj({"id": STR, "name": STR, "description": STR})
    drill = _obj(
        {
            "id": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
            "title": STR,
            "focus_ids": {**_array(STR), "minItems": 1},
            "minutes": {"type": "integer", "minimum": 1},
            "description": STR,
        }
    )
    chosen = {**_array(STR), "maxItems": 3, "uniqueItems": True}
    return {
        "Drill": drill,
        "DrillList": _obj({"drills": _array(ref("Drill"))}),
        "Focus": focus,
        "FocusList": _obj({"focuses": _array(ref("Focus"))}),
        "FocusChoice": _obj({"focus_ids": chosen}),
        "ActiveFocuses": _obj({"focus_ids": chosen, "focuses": _array(ref("Focus"))}),
    }


def _skill_schemas() -> Json:
    source = {"enum": ["model", "cache", "fallback"]}
    texts = _array(STR)
    drills = {**_array(STR), "maxItems": 3}
    subject = _obj(
        {
            "kind": {**STR, "minLength": 1, "maxLength": 64},
            "id": {**STR, "minLength": 1, "maxLength": 200},
        }
    )
    feedback = _obj(
        {
            "id": STR,
            "subject": _obj({"kind": STR, "id": STR}),
            "strengths": texts,
            "weaknesses": texts,
            "tips": {**texts, "minItems": 1},
            "drill_ids": drills,
            "source": source,
            "model": _null("string"),
            "created_at": STR,
        }
    )
    recommendation = _obj(
        {
            "id": STR,
            "focus_id": STR,
            "drill_ids": drills,
            "minutes": {"type": "integer", "minimum": 1},
            "reason": {**STR, "minLength": 1},
            "source": source,
            "created_at": STR,
        }
    )
    return {
        "FeedbackRequest": _obj(
            {"subject": subject, "observations": OBJ},
            {"focus_ids": {**_array(STR), "maxItems": 3, "uniqueItems": True}},
        ),
        "FeedbackAnswer": _obj({"feedback": feedback}),
        "PracticeAnswer": _obj({"recommendation": recommendation}),
    }


def _insight_schemas() -> Json:
    facts = _obj(
        {
            "sessions_7d": INT,
            "minutes_7d": NUM,
            "streak_days": INT,
            "top_errors": _array(_obj({"key": STR, "count": INT})),
            "focus_levels": _array(
                _obj(
                    {
                        "focus_id": STR,
                        "level": _null("integer"),
                        "band": _null("string"),
                        "samples": INT,
                    }
                )
            ),
        }
    )
    insight = _obj(
        {
            "id": STR,
            "type": STR,
            "text": {**STR, "minLength": 1, "maxLength": 600},
            "facts": facts,
            "source": {"enum": ["model", "cache", "fallback"]},
            "created_at": STR,
            "expires_at": STR,
        }
    )
    listed = _obj({"type": STR, "latest": {"oneOf": [ref("Insight"), {"type": "null"}]}})
    return {
        "Insight": insight,
        "InsightList": _obj({"insights": _array(listed)}),
        "InsightAnswer": _obj({"insight": ref("Insight")}),
    }


def _agent_schemas() -> Json:
    statuses = ["pending", "applied", "rejected", "expired"]
    change = _obj(
        {
            "id": STR,
            "kind": {"enum": ["focus_change", "memory"]},
            "payload": OBJ,
            "status": {"enum": statuses},
            "expires_at": STR,
            "created_at": STR,
        }
    )
    memory = _obj({"id": STR, "text": STR, "created_at": STR})
    return {
        "Change": change,
        "ChangeList": _obj({"changes": _array(ref("Change"))}),
        "ChangeAnswer": _obj({"change": ref("Change")}),
        "Memory": memory,
        "MemoryList": _obj({"memories": _array(ref("Memory"))}),
    }


def _other_schemas() -> Json:
    metrics = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 32,
        "propertyNames": {"maxLength": 64},
        "additionalProperties": NUM,
    }
    return {
        "MetricsPush": _obj({"metrics": metrics}),
        "MetricsAccepted": _obj({"accepted": {"const": True}, "feedback_scheduled": BOOL}),
        "Health": _obj({"status": {"const": "ok"}}),
        "Readiness": _obj(
            {
                "ready": BOOL,
                "checks": {"type": "object", "additionalProperties": STR},
                "routes_out": _array(STR),
            }
        ),
        "OpenApiDocument": _obj({"openapi": STR, "info": OBJ, "paths": OBJ}),
    }
