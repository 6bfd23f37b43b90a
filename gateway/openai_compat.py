"""OpenAI-compatible surface: `POST /v1/chat/completions` and `GET /v1/models`.

The official `openai` SDK works against it unchanged, with a gateway JWT as its API key. The
caller's own messages are the context; the gateway's quotas, route fallbacks and assessment
apply as on the other channels. A client's `tools` and `tool_choice` go to the model and its
calls come back as OpenAI's `tool_calls` (`gateway.openai_tools`); the client runs them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.auth import authenticate_request
from gateway.errors import ApiError, error_body, json_response
from gateway.ids import new_id
from gateway.openai_tools import (
    parse_tool_calls,
    parse_tool_choice,
    parse_tools,
    split_turn,
    tool_calls_json,
)
from gateway.outbound import Outbound
from gateway.quotas import QuotaExceeded
from gateway.requests import optional_field, read_json, wrong_type
from gateway.runtime import Gateway, gateway_of
from gateway.streaming import EventStream, sse_frame
from providers.chat import Message, ToolCall
from streams.events import (
    ErrorEvent,
    RateLimitedEvent,
    ResponseCompleted,
    ResponseDelta,
    ResponseFailed,
    ResponseStarted,
    ResponseToolCall,
    ServerEvent,
)
from streams.turn import Emit, TurnControl, TurnInput

__all__ = ["openai_routes"]

GATEWAY_MODEL = "coach"
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


# Accepted by OpenAI, not built here: refused rather than silently ignored (`tools` replaced
# the legacy functions).
_UNSUPPORTED = {
    "functions": "functions are not supported on this route; use tools",
    "function_call": "function_call is not supported on this route; use tool_choice",
}


def _content_text(content: Any, name: str) -> str:
    if content is None:  # an assistant message may carry none
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(str(p) for p in parts)
    raise wrong_type(name, "a string or an array of text parts", content)


def parse_messages(raw: Any) -> tuple[tuple[Message, ...], str, tuple[Message, ...]]:
    """(context, last user text, what follows it) from an OpenAI `messages` array."""
    if raw is None:
        raise ApiError(400, "invalid_request", "messages is required")
    if not isinstance(raw, list):
        raise wrong_type("messages", "an array", raw)
    if not raw:
        raise ApiError(400, "invalid_request", "messages must not be empty")
    messages: list[Message] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise wrong_type(f"messages[{i}]", "an object", item)
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            roles = ", ".join(_ROLES)
            raise ApiError(400, "invalid_request", f"messages[{i}].role must be one of {roles}")
        messages.append(_message(item, _ROLES[role], f"messages[{i}]"))
    return split_turn(messages)


def _message(item: dict[str, Any], role: str, field: str) -> Message:
    text = _content_text(item.get("content"), f"{field}.content")
    if role == "tool":
        call_id = item.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise wrong_type(f"{field}.tool_call_id", "a non-empty string", call_id)
        return Message("tool", text, tool_call_id=call_id)
    calls: tuple[ToolCall, ...] = ()
    if role == "assistant":
        calls = parse_tool_calls(item.get("tool_calls"), f"{field}.tool_calls")
    return Message(role, text, tool_calls=calls)  # type: ignore[arg-type]


def _route_model(gateway: Gateway, body: dict[str, Any]) -> str | None:
    model: str | None = optional_field(body, "model", str, "a string")
    if model is None or model in ("", GATEWAY_MODEL):
        return None
    if model not in {t.model for t in gateway.router.targets("chat")}:
        shown = model[:64]
        raise ApiError(404, "model_not_found", f"model {shown!r} is not served; see GET /v1/models")
    return model


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """A 400 `unsupported_parameter` for what this route would otherwise silently ignore."""
    for name, message in _UNSUPPORTED.items():
        if body.get(name) is not None:
            raise ApiError(400, "unsupported_parameter", message)
    n = optional_field(body, "n", int, "an integer")
    if n is not None and n != 1:
        message = "n other than 1 is not supported yet on this route"
        raise ApiError(400, "unsupported_parameter", message)


def _max_tokens(body: dict[str, Any]) -> int | None:
    name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    value = optional_field(body, name, int, "a positive integer")
    if value is not None and value < 1:
        raise ApiError(400, "invalid_request", f"{name} must be a positive integer")
    return value  # type: ignore[no-any-return]


def _stream_options(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage) from `stream` and `stream_options`."""
    stream = optional_field(body, "stream", bool, "true or false") or False
    options = optional_field(body, "stream_options", dict, "an object") or {}
    include_usage = optional_field(options, "include_usage", bool, "true or false")
    return stream, bool(include_usage)


def _failure_response(event: ResponseFailed) -> Response:
    status = 503 if event.error.get("retryable") else 502
    body = error_body(
        status, event.error["code"], event.error["message"], bool(event.error.get("retryable"))
    )
    return json_response(body, status)


_FRAME_TAIL = b',"finish_reason":null}]}\n\n'


class _Chunks:
    """Renders gateway events as `chat.completion.chunk` SSE frames."""

    def __init__(self, completion_id: str, include_usage: bool) -> None:
        self.id = completion_id
        self.created = int(time.time())
        self.include_usage = include_usage
        self.calls: list[ToolCall] = []  # the model's tool calls, in order
        self._use_model(GATEWAY_MODEL)

    def _use_model(self, model: str) -> None:
        """Set the model the chunks name, and the bytes every mid-stream frame starts with:
        what `_chunk` would encode before its delta, so that a token's frame encodes only its
        delta (the same bytes as encoding the whole chunk: orjson keeps the keys' order)."""
        self.model = model
        self._frame_head = b"".join(
            (
                b'data: {"id":',
                orjson.dumps(self.id),
                b',"object":"chat.completion.chunk","created":',
                orjson.dumps(self.created),
                b',"model":',
                orjson.dumps(model),
                b',"choices":[{"index":0,"delta":',
            )
        )

    def _frame(self, delta: dict[str, Any]) -> bytes:
        """The SSE frame of a chunk with `delta` and no finish reason."""
        return self._frame_head + orjson.dumps(delta) + _FRAME_TAIL

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def render(self, seq: int, event: ServerEvent) -> bytes | None:
        match event:
            case ResponseDelta(text=text):
                return self._frame({"content": text})
            case ResponseStarted(model=model):
                self._use_model(model)
                return self._frame({"role": "assistant", "content": ""})
            case ResponseToolCall():
                return self._frame({"tool_calls": self.add_call(event)})
            case ResponseCompleted():
                return self._final(event)
            case ResponseFailed(error=error):
                retryable = bool(error.get("retryable"))
                return sse_frame(
                    orjson.dumps(error_body(502, error["code"], error["message"], retryable))
                )
            case RateLimitedEvent(scope=scope):
                return sse_frame(
                    orjson.dumps(error_body(429, "rate_limited", f"quota {scope} exceeded", True))
                )
            case ErrorEvent(code=code, message=message, retryable=retryable):
                return sse_frame(orjson.dumps(error_body(500, code, message, retryable)))
            case _:
                return None

    def add_call(self, event: ResponseToolCall) -> list[dict[str, Any]]:
        """Keep a call; its `delta.tool_calls` (the whole call in one piece, at its index)."""
        self.calls.append(ToolCall(event.call_id, event.name, event.arguments))
        (call,) = tool_calls_json(self.calls, indexed=True)[-1:]
        return [call]

    def _final(self, event: ResponseCompleted) -> bytes:
        finish = "stop" if event.finish_reason in ("stop", "cancelled") else event.finish_reason
        frame = sse_frame(orjson.dumps(self._chunk({}, finish)))
        if self.include_usage:
            usage = _usage(event)
            frame += sse_frame(orjson.dumps({**self._chunk({}), "choices": [], "usage": usage}))
        return frame


def _usage(event: ResponseCompleted) -> dict[str, int]:
    prompt, completion = event.usage["input_tokens"], event.usage["output_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class CompletionsEndpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._prepare(request)
        await response(scope, receive, send)

    async def _prepare(self, request: Request) -> EventStream | Response:
        gateway = gateway_of(request)
        principal = await authenticate_request(request)
        body = await read_json(request)
        _refuse_unsupported(body)
        context, text, tail = parse_messages(body.get("messages"))
        tools = parse_tools(body.get("tools"))
        tool_choice = parse_tool_choice(body.get("tool_choice"), tools)
        optional_field(body, "parallel_tool_calls", bool, "true or false")  # a hint, not kept
        model = _route_model(gateway, body)
        max_tokens = _max_tokens(body)
        stream, include_usage = _stream_options(body)
        ticket = await gateway.admit_request(principal.user_id)
        info = await gateway.open_admitted(principal, None, ticket)
        turn = TurnInput(
            new_id("turn"),
            text,
            new_id("req"),
            "openai",
            context=context,
            max_tokens=max_tokens,
            model=model,
            tools=tools,
            tool_choice=tool_choice,
            tail=tail,
        )
        outbound = Outbound(gateway.settings.send_queue_size, gateway.settings.send_timeout_s)
        control = TurnControl()

        async def produce(emit: Emit) -> None:
            live = gateway.registry.attach(info, _discard)
            try:
                await gateway.run_turn(live, turn, emit, control=control, ticket=ticket)
            except QuotaExceeded as exc:
                outbound.put_nowait(RateLimitedEvent(exc.scope, int(exc.retry_after_s * 1000)))
            finally:
                gateway.registry.detach(live, _discard)

        chunks = _Chunks("chatcmpl-" + turn.turn_id, include_usage)
        if stream:
            return EventStream(
                outbound, produce, control, chunks.render, gate=_gate, trailer=b"data: [DONE]\n\n"
            )
        return EventStream(
            outbound, produce, control, _no_render, gate=_collector(outbound, chunks)
        )


def _discard(event: ServerEvent) -> None:
    return None


def _no_render(seq: int, event: ServerEvent) -> None:
    return None


def _gate(event: ServerEvent) -> Response | None:
    if isinstance(event, ResponseFailed):
        return _failure_response(event)
    if isinstance(event, RateLimitedEvent):
        return json_response(
            error_body(429, "rate_limited", f"quota {event.scope} exceeded", True),
            429,
            {"Retry-After": str(max(1, event.retry_after_ms // 1000))},
        )
    return None


def _collector(outbound: Outbound, chunks: _Chunks) -> Any:
    """A gate that consumes the whole turn and answers one `chat.completion` object."""

    class Collected:
        def __init__(self, first: ServerEvent) -> None:
            self.first = first

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            event: ServerEvent | None = self.first
            while event is not None and not isinstance(
                event, ResponseCompleted | ResponseFailed | RateLimitedEvent
            ):
                if isinstance(event, ResponseToolCall):
                    chunks.add_call(event)
                item = await outbound.get()
                event = item[1] if item else None
            response = _completion_response(event, chunks)
            await response(scope, receive, send)

    return Collected


def _completion_response(event: ServerEvent | None, chunks: _Chunks) -> Response:
    if isinstance(event, ResponseCompleted):
        finish = "stop" if event.finish_reason in ("stop", "cancelled") else event.finish_reason
        return json_response(
            {
                "id": chunks.id,
                "object": "chat.completion",
                "created": chunks.created,
                "model": event.model,
                "choices": [
                    {"index": 0, "message": _reply_message(event, chunks), "finish_reason": finish}
                ],
                "usage": _usage(event),
            }
        )
    if isinstance(event, ResponseFailed):
        return _failure_response(event)
    if isinstance(event, RateLimitedEvent):
        return _gate(event) or json_response({}, 500)
    return json_response(
        error_body(500, "internal_error", "the turn ended without a reply", True), 500
    )


def _reply_message(event: ResponseCompleted, chunks: _Chunks) -> dict[str, Any]:
    """The assistant message; with tool calls, OpenAI's `content` is null when it has no text."""
    if not chunks.calls:
        return {"role": "assistant", "content": event.text}
    return {
        "role": "assistant",
        "content": event.text or None,
        "tool_calls": tool_calls_json(chunks.calls, indexed=False),
    }


async def models_endpoint(request: Request) -> Response:
    gateway = gateway_of(request)
    await authenticate_request(request)
    created = int(time.time())
    names = [GATEWAY_MODEL, *dict.fromkeys(t.model for t in gateway.router.targets("chat"))]
    data = [
        {"id": n, "object": "model", "created": created, "owned_by": "coach-gateway"} for n in names
    ]
    return json_response({"object": "list", "data": data})


def openai_routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", CompletionsEndpoint(), methods=["POST"]),
        Route("/v1/models", models_endpoint, methods=["GET"]),
    ]
