"""An ASGI response that streams one turn's events as server-sent events.

The turn runs as a task owned by the response; a client that goes away cancels it (the turn is
then stored as cancelled, with what was sent), and a client that stops reading is cut off by the
bounded `Outbound` queue instead of growing memory. Once the response has started, the turn's
events go out from the turn's own task as it emits them (`SocketWriter`, with the server's
`send_now` where it has one), not through the queue and a second task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.outbound import Encode, Outbound, SocketWriter
from gateway.send_now import send_now_of
from streams.events import ServerEvent
from streams.turn import Emit, TurnControl

__all__ = ["EventStream", "sse_frame"]

SSE_HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    "connection": "keep-alive",
}


def sse_frame(data: str | bytes, *, event: str | None = None, id: int | None = None) -> bytes:
    """One SSE message; `data` must be a single line (JSON is)."""
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if id is not None:
        head += b"id: " + str(id).encode() + b"\n"
    body = data.encode() if isinstance(data, str) else data
    return head + b"data: " + body + b"\n\n"


Gate = Callable[[ServerEvent], ASGIApp | None]


class EventStream:
    """Runs `produce(emit)` and streams what it emits, and what is put in `outbound` besides
    (side-channel events), in order; `outbound` is closed when `produce` returns.

    `gate`, if given, sees the first event before any byte is sent and may answer with a plain
    response instead (an HTTP error when the turn failed before its first token).
    """

    def __init__(
        self,
        outbound: Outbound,
        produce: Callable[[Emit], Awaitable[None]],
        control: TurnControl,
        render: Encode,
        *,
        gate: Gate | None = None,
        trailer: bytes = b"",
    ) -> None:
        self._outbound = outbound
        self._produce = produce
        self._control = control
        self._render = render
        self._gate = gate
        self._trailer = trailer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_body(body: bytes) -> None:
            await send({"type": "http.response.body", "body": body, "more_body": True})

        # Held: nothing goes out before the gate has seen the first event.
        writer = SocketWriter(
            self._outbound, send_body, send_now_of(scope), self._render, held=True
        )
        async with asyncio.TaskGroup() as tasks:
            producer = tasks.create_task(self._run_producer(writer.emit))
            watcher = tasks.create_task(self._watch_disconnect(receive, producer))
            try:
                await self._pump(writer, scope, receive, send)
            finally:
                watcher.cancel()
                await self._stop(producer)
                writer.close()

    async def _run_producer(self, emit: Emit) -> None:
        try:
            await self._produce(emit)
        finally:
            self._outbound.close()

    async def _pump(self, writer: SocketWriter, scope: Scope, receive: Receive, send: Send) -> None:
        first = await self._outbound.get()
        if first is not None and self._gate is not None:
            replacement = self._gate(first[1])
            if replacement is not None:
                await replacement(scope, receive, send)
                return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    *((k.encode(), v.encode()) for k, v in SSE_HEADERS.items()),
                ],
            }
        )
        if first is not None:
            await writer.release(first)
            await writer.run()
        await send({"type": "http.response.body", "body": self._trailer, "more_body": False})

    async def _watch_disconnect(self, receive: Receive, producer: asyncio.Task[None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        await self._stop(producer)

    async def _stop(self, producer: asyncio.Task[None]) -> None:
        if not producer.done():
            self._control.cancel_requested = True
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({producer}, timeout=2.0)
