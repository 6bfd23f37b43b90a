"""Pure conversions between our chat types and the OpenAI and Anthropic wire formats.

No I/O here: the adapters call these, and tests drive them with recorded payloads.

JSON-schema requests: OpenAI gets `response_format: {"type": "json_schema", ...}`. Anthropic gets
one tool named `ChatRequest.schema_name` whose `input_schema` is the schema (its top level must be
an object), forced with `tool_choice: {"type": "tool", "name": ...}`; the tool input, streamed as
`input_json_delta` events, is the JSON text of the answer.

Tools (`ChatRequest.tools`) and the calls a model makes are converted in `providers.wire_tools`;
the feeds here hand the vendor's call fragments to the tally, whose final chunk carries the
assembled calls with finish reason "tool_calls". On Anthropic a `tool_use` block is a call only
when real tools were offered and it is not the JSON-schema tool (whose input stays the answer).

A JSON-schema answer may also be asked for unstreamed (`stream=False`): `openai_answer` and
`anthropic_answer` read the one response into the same `StreamTally` as the streamed feeds.

Answers arrive as decoded JSON (dicts, as the vendors send them), not as SDK models.
The feeds read them defensively: a missing key or a `null` means "not said", while a chunk
that is not an object, or a field of the wrong type, raises `MalformedResponse`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers import wire_tools
from providers.chat import ChatChunk, ChatRequest, Usage
from providers.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    ProviderError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "ANTHROPIC_DEFAULT_MAX_TOKENS",
    "StreamTally",
    "anthropic_answer",
    "anthropic_feed",
    "anthropic_params",
    "error_for_status",
    "normalize_finish",
    "openai_answer",
    "openai_feed",
    "openai_params",
    "retry_after_seconds",
    "status_of_anthropic_error",
]

ANTHROPIC_DEFAULT_MAX_TOKENS = 1024

_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",  # a forced JSON-schema tool: its input is the answer
    "tool_calls": "stop",
    "function_call": "stop",
    "pause_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}

_ANTHROPIC_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def normalize_finish(reason: str | None) -> str:
    """A vendor finish reason in our words: "stop", "length" or "content_filter"."""
    if reason is None:
        return "stop"
    return _FINISH.get(reason, reason)


# -- requests -------------------------------------------------------------------------------


def openai_params(request: ChatRequest, *, stream: bool = True) -> dict[str, Any]:
    """The JSON body of a `POST /chat/completions`: streamed with usage included, or (`stream`
    False) one whole answer (read by `openai_answer`)."""
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [
            # the common case inline: one call less per message
            {"role": m.role, "content": m.content}
            if m.role != "tool" and not m.tool_calls
            else wire_tools.openai_message(m)
            for m in request.messages
        ],
        "stream": stream,
    }
    if stream:
        params["stream_options"] = {"include_usage": True}
    if request.tools:
        params["tools"] = wire_tools.openai_tools(request.tools)
    if request.tools and request.tool_choice is not None:  # OpenAI refuses it without tools
        params["tool_choice"] = wire_tools.openai_tool_choice(request.tool_choice)
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.json_schema is not None:
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": request.json_schema},
        }
    return params


def anthropic_params(request: ChatRequest, *, stream: bool = True) -> dict[str, Any]:
    """The JSON body of a `POST /v1/messages`, streamed or (`stream` False) one whole message
    (read by `anthropic_answer`): system text apart, roles alternating."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
        "messages": wire_tools.anthropic_messages(
            [m for m in request.messages if m.role != "system"]
        ),
        "stream": stream,
    }
    if system:
        params["system"] = system
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.tools:
        params["tools"] = wire_tools.anthropic_tools(request.tools)
        if request.tool_choice is not None:
            params["tool_choice"] = wire_tools.anthropic_tool_choice(request.tool_choice)
    if request.json_schema is not None:
        name = request.schema_name
        schema_tool = {
            "name": name,
            "description": "Answer with JSON that fits this schema.",
            "input_schema": request.json_schema,
        }
        params["tools"] = [*params.get("tools", []), schema_tool]
        params["tool_choice"] = {"type": "tool", "name": name}
    return params


# -- streamed answers -----------------------------------------------------------------------


@dataclass(slots=True)
class StreamTally:
    """What a vendor stream has said so far about its end and its token counts."""

    model: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    deltas: int = 0
    finished: bool = False  # the vendor's finish marker arrived
    # Anthropic: real tools were offered, and the name of the JSON-schema tool (not a call).
    offers_tools: bool = False
    answer_tool: str | None = None
    tool_parts: wire_tools.ToolCallParts = field(default_factory=wire_tools.ToolCallParts)

    @classmethod
    def for_request(cls, request: ChatRequest) -> StreamTally:
        """A tally for the stream that answers `request`."""
        return cls(
            model=request.model,
            offers_tools=bool(request.tools),
            answer_tool=request.schema_name if request.json_schema is not None else None,
        )

    def final_chunk(self) -> ChatChunk:
        """The closing chunk; without reported usage, output counts the text deltas. Tool calls
        come with a finish that would otherwise be "stop" (a call cut by the token limit is no
        call: the finish stays "length"); a call left unfinished raises `MalformedResponse`."""
        usage = Usage(
            input_tokens=self.input_tokens or 0,
            output_tokens=self.deltas if self.output_tokens is None else self.output_tokens,
        )
        finish = normalize_finish(self.finish_reason)
        if finish == "stop" and self.tool_parts:
            calls = self.tool_parts.calls()
            return ChatChunk(
                usage=usage, finish_reason="tool_calls", model=self.model, tool_calls=calls
            )
        return ChatChunk(usage=usage, finish_reason=finish, model=self.model)


def openai_feed(tally: StreamTally, chunk: object) -> str:
    """Record one decoded `chat.completion.chunk` in `tally`; returns its text delta, or ""."""
    chunk = _object(chunk, "chunk")
    if model := _string(chunk, "model"):
        tally.model = model
    if (usage := chunk.get("usage")) is not None:
        usage = _object(usage, "usage")
        tally.input_tokens = _count(usage, "prompt_tokens")
        tally.output_tokens = _count(usage, "completion_tokens")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise MalformedResponse(f"`choices` is not a list: {choices!r:.80}")
    text = ""
    for choice in choices:
        choice = _object(choice, "choice")
        if choice.get("index", 0) != 0:
            continue
        if (delta := choice.get("delta")) is not None:
            delta = _object(delta, "delta")
            text = _string(delta, "content") or text
            if (fragments := delta.get("tool_calls")) is not None:
                tally.deltas += tally.tool_parts.openai_fragments(fragments)
        if (finish := _string(choice, "finish_reason")) is not None:
            tally.finish_reason = finish
            tally.finished = True
    if text:
        tally.deltas += 1
    return text


def anthropic_feed(tally: StreamTally, event: object) -> str:
    """Record one decoded Messages stream event in `tally`; returns its text (or tool JSON)."""
    event = _object(event, "event")
    match event.get("type"):
        case "message_start":
            message = _object(event.get("message"), "message")
            tally.model = _string(message, "model") or tally.model
            if (usage := message.get("usage")) is not None:
                tally.input_tokens = _count(_object(usage, "usage"), "input_tokens")
        case "content_block_start":
            block = _object(event.get("content_block"), "content_block")
            index = event.get("index")
            if _is_call(tally, block) and isinstance(index, int):
                tally.tool_parts.anthropic_start(index, block)
        case "content_block_delta":
            delta = _object(event.get("delta"), "delta")
            return _anthropic_delta(tally, event.get("index"), delta)
        case "content_block_stop":
            tally.tool_parts.anthropic_stop(event.get("index"))
        case "message_delta":
            delta = _object(event.get("delta") or {}, "delta")
            tally.finish_reason = _string(delta, "stop_reason") or tally.finish_reason
            if (usage := event.get("usage")) is not None:
                usage = _object(usage, "usage")
                tally.output_tokens = _count(usage, "output_tokens")
                if (input_tokens := _count(usage, "input_tokens")) is not None:
                    tally.input_tokens = input_tokens
        case "message_stop":
            tally.finished = True
    return ""


def _is_call(tally: StreamTally, block: dict[str, Any]) -> bool:
    """A `tool_use` block of a real tool (the JSON-schema tool's input is the answer's text)."""
    return (
        tally.offers_tools
        and block.get("type") == "tool_use"
        and block.get("name") != tally.answer_tool
    )


def _anthropic_delta(tally: StreamTally, index: object, delta: dict[str, Any]) -> str:
    match delta.get("type"):
        case "text_delta":
            text = _string(delta, "text")
        case "input_json_delta":
            text = _string(delta, "partial_json")
            if text is not None and tally.tool_parts.anthropic_delta(index, text):
                tally.deltas += 1
                return ""
        case _:  # thinking, signatures, citations: not part of the answer
            text = None
    if text:
        tally.deltas += 1
    return text or ""


# -- whole answers ---------------------------------------------------------------------------
# A JSON-schema answer is read whole by its caller, so it is asked for unstreamed: one response
# instead of an event per token. These read it into the same tally as a stream, so its final
# chunk says the same; a body without the answer's parts raises `MalformedResponse`.


def _read_head(tally: StreamTally, body: dict[str, Any], input_key: str, output_key: str) -> None:
    """A whole answer's model and token counts (named `input_key`, `output_key` in its usage)."""
    tally.model = _string(body, "model") or tally.model
    if (usage := body.get("usage")) is not None:
        usage = _object(usage, "usage")
        tally.input_tokens = _count(usage, input_key)
        tally.output_tokens = _count(usage, output_key)


def openai_answer(tally: StreamTally, body: object) -> str:
    """Record a decoded `chat.completion` in `tally` (finished); returns its text."""
    body = _object(body, "response")
    _read_head(tally, body, "prompt_tokens", "completion_tokens")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse(f"`choices` is not a non-empty list: {choices!r:.80}")
    first = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
    choice = _object(choices[0] if first is None else first, "choice")
    message = _object(choice.get("message"), "message")
    text = _string(message, "content") or ""
    if (calls := message.get("tool_calls")) is not None:
        tally.deltas += tally.tool_parts.openai_fragments(calls)
    tally.finish_reason = _string(choice, "finish_reason")
    tally.finished = True
    if text:
        tally.deltas += 1
    return text


def anthropic_answer(tally: StreamTally, body: object) -> str:
    """Record a decoded Messages response in `tally` (finished); returns its text, the forced
    JSON-schema tool's `input` serialized as JSON text."""
    body = _object(body, "message")
    _read_head(tally, body, "input_tokens", "output_tokens")
    content = body.get("content")
    if not isinstance(content, list):
        raise MalformedResponse(f"`content` is not a list: {content!r:.80}")
    parts: list[str] = []
    for index, block in enumerate(content):
        block = _object(block, "content block")
        kind = block.get("type")
        if kind == "text":
            parts.append(_string(block, "text") or "")
        elif kind == "tool_use" and _is_call(tally, block):
            tally.tool_parts.anthropic_start(index, block)
            tally.tool_parts.anthropic_stop(index)
            tally.deltas += 1
        elif kind == "tool_use":  # the JSON-schema tool: its input is the answer
            if "input" not in block:
                raise MalformedResponse("a `tool_use` block without its `input`")
            parts.append(orjson.dumps(block["input"]).decode())
    tally.finish_reason = _string(body, "stop_reason")
    tally.finished = True
    text = "".join(parts)
    if text:
        tally.deltas += 1
    return text


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what} is not a JSON object: {value!r:.80}")
    return value


def _string(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedResponse(f"`{key}` is not a string: {value!r:.80}")


def _count(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise MalformedResponse(f"`{key}` is not an integer: {value!r:.80}")


# -- errors ---------------------------------------------------------------------------------


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """`retry-after-ms`, else `Retry-After` as seconds or an HTTP date; None when absent."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_of_anthropic_error(body: object) -> int | None:
    """The HTTP status an Anthropic error body stands for (errors sent inside a stream)."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            return _ANTHROPIC_ERROR_STATUS.get(str(error.get("type")))
    return None


def error_for_status(
    status: int, message: str, *, provider: str, retry_after_s: float | None = None
) -> ProviderError:
    """Our error for an upstream HTTP status."""
    kind: type[ProviderError]
    if status in (401, 403):
        kind = AuthenticationFailed
    elif status == 429:
        kind = RateLimited
    elif status in (408, 504):
        kind = UpstreamTimeout
    elif status >= 500 or status == 409:
        kind = UpstreamUnavailable
    else:
        kind = BadRequest
    return kind(message, status=status, retry_after_s=retry_after_s, provider=provider)
