"""An ASGI response that streams one turn's events as server-sent events.

The turn runs as a task owned by the response; a client that goes away cancels it (the turn is
then stored as cancelled, with what was sent), and a client that stops reading is cut off by the
bounded `Outbound` queue instead of growing memory: its turn is cancelled and its stream ends with
an `error` event (`slow_consumer`) in place of its usual end, so that it cannot take what it got
for a whole reply. Once the response has started, the turn's events go out from the turn's own
task as it emits them (`SocketWriter`, with the server's `send_now` where it has one), not
through the queue and a second task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.outbound import Encode, Outbound, SocketWriter
from gateway.send_now import send_now_of
from streams.events import ErrorEvent, ServerEvent
from streams.turn import Emit, TurnControl

__all__ = ["SLOW_CONSUMER", "EventStream", "sse_frame"]

log = logging.getLogger("coach.streaming")

SLOW_CONSUMER = ErrorEvent(
    "slow_consumer", "the client read too slowly: events were dropped and the reply cut off", True
)

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
                await self._pump(writer, producer, scope, receive, send)
            finally:
                watcher.cancel()
                await self._stop(producer)
                writer.close()

    async def _run_producer(self, emit: Emit) -> None:
        try:
            await self._produce(emit)
        finally:
            self._outbound.close()

    async def _pump(
        self,
        writer: SocketWriter,
        producer: asyncio.Task[None],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        outbound = self._outbound
        first = await outbound.get()
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
            # The events go out from their own task, so that a send stuck on a client that
            # stopped reading can be given up: the drop (`outbound.overflow()`) cancels it.
            sending = asyncio.create_task(_send_all(writer, first))

            def give_up() -> None:
                sending.cancel()

            outbound.on_overflow = give_up
            try:
                await asyncio.wait({sending})
            finally:
                sending.cancel()
            if not sending.cancelled():
                sending.result()  # what it raised
        ending = self._trailer
        if outbound.overflowed:
            log.warning("slow consumer dropped", extra={"queued": outbound.qsize()})
            await self._stop(producer)
            ending = self._render(outbound.number(), SLOW_CONSUMER) or b""
        await send({"type": "http.response.body", "body": ending, "more_body": False})

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


async def _send_all(writer: SocketWriter, first: tuple[int, ServerEvent]) -> None:
    await writer.release(first)
    await writer.run()
