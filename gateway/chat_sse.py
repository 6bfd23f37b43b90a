"""`POST /v1/chat`: one turn as a `text/event-stream` of the realtime protocol's events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.auth import authenticate_request
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.outbound import Outbound
from gateway.quotas import QuotaExceeded
from gateway.requests import optional_field, read_json
from gateway.runtime import gateway_of
from gateway.streaming import EventStream, sse_frame
from gateway.telemetry import session_span
from streams.events import (
    MAX_TEXT_CHARS,
    RateLimitedEvent,
    ServerEvent,
    SessionCreated,
    encode_json,
)
from streams.turn import Emit, TurnControl, TurnInput

__all__ = ["chat_routes"]


def _render(seq: int, event: ServerEvent) -> bytes:
    return sse_frame(encode_json(event), event=event.type, id=seq)


class ChatEndpoint:
    """ASGI endpoint: validate, admit, then stream the turn."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        stream = await self._prepare(request)
        await stream(scope, receive, send)

    async def _prepare(self, request: Request) -> EventStream:
        gateway = gateway_of(request)
        principal = await authenticate_request(request)
        body = await read_json(request)
        message = optional_field(body, "message", str, "a string")
        if message is None:
            raise ApiError(400, "invalid_request", "message is required")
        if not message.strip():
            raise ApiError(400, "empty_text", "message must not be empty")
        if len(message) > MAX_TEXT_CHARS:
            raise ApiError(400, "text_too_long", f"message is over {MAX_TEXT_CHARS} characters")
        voice = optional_field(body, "voice", bool, "true or false") or False
        session_id = optional_field(body, "session_id", str, "a string")
        ticket = await gateway.admit_request(principal.user_id)
        info = await gateway.open_admitted(principal, session_id, ticket)
        outbound = Outbound(gateway.settings.send_queue_size, gateway.settings.send_timeout_s)
        control = TurnControl()
        turn = TurnInput(new_id("turn"), message, new_id("req"), "sse")

        async def produce(emit: Emit) -> None:
            live = gateway.registry.attach(info, outbound.put_nowait)
            try:
                outbound.put_nowait(
                    SessionCreated(
                        info.session_id,
                        principal.user_id,
                        gateway.settings.public_limits(),
                        info.resumed,
                    )
                )
                try:
                    with session_span("sse", principal.user_id, info.session_id):
                        await gateway.run_turn(
                            live, turn, emit, control=control, speak=voice, ticket=ticket
                        )
                except QuotaExceeded as exc:
                    outbound.put_nowait(RateLimitedEvent(exc.scope, int(exc.retry_after_s * 1000)))
            finally:
                gateway.registry.detach(live, outbound.put_nowait)

        return EventStream(outbound, produce, control, _render)


def chat_routes() -> list[Route]:
    return [Route("/v1/chat", ChatEndpoint(), methods=["POST"])]
