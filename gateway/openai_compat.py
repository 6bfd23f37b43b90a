"""OpenAI-compatible surface: `POST /v1/chat/completions` and `GET /v1/models`.

The official `openai` SDK works against it unchanged, with a gateway JWT as its API key. The
caller's own messages are the context; the gateway's quotas, route fallbacks and assessment
apply as on the other channels.
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
from gateway.outbound import Outbound
from gateway.quotas import QuotaExceeded
from gateway.requests import read_json
from gateway.runtime import Gateway, gateway_of
from gateway.streaming import EventStream, sse_frame
from providers.chat import Message
from streams.events import (
    MAX_TEXT_CHARS,
    ErrorEvent,
    RateLimitedEvent,
    ResponseCompleted,
    ResponseDelta,
    ResponseFailed,
    ResponseStarted,
    ServerEvent,
)
from streams.turn import Emit, TurnControl, TurnInput

__all__ = ["openai_routes"]

GATEWAY_MODEL = "coach"
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(str(p) for p in parts)
    raise ApiError(400, "invalid_request", "message content must be a string or text parts")


def parse_messages(raw: Any) -> tuple[tuple[Message, ...], str]:
    """(context, last user text) from an OpenAI `messages` array."""
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "invalid_request", "`messages` must be a non-empty array")
    messages: list[Message] = []
    for item in raw:
        if not isinstance(item, dict) or item.get("role") not in _ROLES:
            raise ApiError(
                400, "invalid_request", "each message needs a role of system/user/assistant"
            )
        messages.append(Message(_ROLES[item["role"]], _content_text(item.get("content", ""))))  # type: ignore[arg-type]
    last = messages[-1]
    if last.role != "user" or not last.content.strip():
        raise ApiError(400, "empty_text", "the last message must be a non-empty user message")
    if len(last.content) > MAX_TEXT_CHARS:
        raise ApiError(
            400, "text_too_long", f"the user message is over {MAX_TEXT_CHARS} characters"
        )
    return tuple(messages[:-1]), last.content


def _route_model(gateway: Gateway, model: Any) -> str | None:
    served = {t.model for t in gateway.router.targets("chat")}
    if model in (None, "", GATEWAY_MODEL):
        return None
    if not isinstance(model, str) or model not in served:
        raise ApiError(404, "model_not_found", f"model {model!r} is not served; see GET /v1/models")
    return model


def _failure_response(event: ResponseFailed) -> Response:
    status = 503 if event.error.get("retryable") else 502
    body = error_body(
        status, event.error["code"], event.error["message"], bool(event.error.get("retryable"))
    )
    return json_response(body, status)


class _Chunks:
    """Renders gateway events as `chat.completion.chunk` SSE frames."""

    def __init__(self, completion_id: str, include_usage: bool) -> None:
        self.id = completion_id
        self.created = int(time.time())
        self.model = GATEWAY_MODEL
        self.include_usage = include_usage

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
            case ResponseStarted(model=model):
                self.model = model
                return sse_frame(orjson.dumps(self._chunk({"role": "assistant", "content": ""})))
            case ResponseDelta(text=text):
                return sse_frame(orjson.dumps(self._chunk({"content": text})))
            case ResponseCompleted():
                return self._final(event)
            case ResponseFailed(error=error):
                return sse_frame(
                    orjson.dumps(error_body(502, error["code"], error["message"], False))
                )
            case RateLimitedEvent(scope=scope):
                return sse_frame(
                    orjson.dumps(error_body(429, "rate_limited", f"quota {scope} exceeded", True))
                )
            case ErrorEvent(code=code, message=message, retryable=retryable):
                return sse_frame(orjson.dumps(error_body(500, code, message, retryable)))
            case _:
                return None

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
        context, text = parse_messages(body.get("messages"))
        model = _route_model(gateway, body.get("model"))
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ApiError(400, "invalid_request", "max_tokens must be a positive integer")
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

        stream_opts = body.get("stream_options") or {}
        chunks = _Chunks("chatcmpl-" + turn.turn_id, bool(stream_opts.get("include_usage")))
        if body.get("stream"):
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
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": event.text},
                        "finish_reason": finish,
                    }
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
