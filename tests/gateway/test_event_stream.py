"""`EventStream` on a real uvicorn with the gateway's HTTP protocol: the events a turn emits go
out as it emits them through `send_now`, in order with side-channel events and numbered without
gaps; the gate still answers before any byte of the stream; a client that stops reading is
dropped, its turn cancelled and its stream ended with an error; a client that leaves cancels
the turn; a send that fails cuts the response off and stops the turn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from gateway.outbound import Outbound
from gateway.send_now import SEND_NOW
from gateway.streaming import EventStream, sse_frame
from streams.events import ErrorEvent, ResponseDelta, ServerEvent, encode_json
from streams.turn import Emit, TurnControl
from tests.conftest import eventually
from tests.gateway.test_http_protocol import raw_client, sender
from tests.gateway.test_http_protocol import served as served_http

MakeStream = Callable[[], EventStream]


def render(seq: int, event: ServerEvent) -> bytes:
    return sse_frame(encode_json(event), event=event.type, id=seq)


@contextlib.asynccontextmanager
async def served(make: MakeStream, sent_now: list[bytes]) -> AsyncIterator[tuple[str, int]]:
    """Each request streams a new `make()`; what went through `send_now` lands in `sent_now`."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = sender(scope)

        def counted(data: bytes) -> bool:
            written = send_now(data)
            if written:
                sent_now.append(data)
            return written

        scope["extensions"][SEND_NOW] = {"send": counted}
        await make()(scope, receive, send)

    async with served_http(handler) as address:
        yield address


async def read_events(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_sse(http, "GET", url) as source,
    ):
        assert source.response.status_code == 200
        return [(sse.event, sse.id, orjson.loads(sse.data)) async for sse in source.aiter_sse()]


def delta(text: str) -> ServerEvent:
    return ResponseDelta("turn_1", text)


async def test_emitted_events_go_out_now_in_order_with_side_channel_ones() -> None:
    sent_now: list[bytes] = []

    def make() -> EventStream:
        outbound = Outbound(8, send_timeout_s=5)

        async def produce(emit: Emit) -> None:
            outbound.put_nowait(delta("queued first"))  # held until the gate saw it
            await emit(delta("a"))
            for text in "bc":
                await emit(delta(text))
                await asyncio.sleep(0)
            outbound.put_nowait(ErrorEvent("note", "a side-channel event"))
            await emit(delta("d"))  # behind the queued one: through the writer task
            await asyncio.sleep(0.01)
            await emit(delta("e"))  # nothing queued any more: now again

        return EventStream(outbound, produce, TurnControl(), render)

    async with served(make, sent_now) as (host, port):
        events = await read_events(f"http://{host}:{port}/")
    texts = [data.get("text", data.get("code")) for _, _, data in events]
    assert texts == ["queued first", "a", "b", "c", "note", "d", "e"]
    assert [int(seq) for _, seq, _ in events] == list(range(1, 8))
    now = [orjson.loads(frame.split(b"data: ")[1]).get("text") for frame in sent_now]
    assert now == ["queued first", "a", "b", "c", None, "d", "e"]  # None: the note


async def test_the_gate_answers_instead_of_the_stream() -> None:
    sent_now: list[bytes] = []

    def gate(event: ServerEvent) -> Any:
        return JSONResponse({"refused": event.type}, status_code=429)

    def make() -> EventStream:
        outbound = Outbound(8, send_timeout_s=5)

        async def produce(emit: Emit) -> None:
            await emit(delta("a"))
            await emit(delta("b"))

        return EventStream(outbound, produce, TurnControl(), render, gate=gate)

    async with served(make, sent_now) as (host, port), httpx.AsyncClient() as http:
        response = await http.get(f"http://{host}:{port}/")
    assert response.status_code == 429 and response.json() == {"refused": "response.delta"}
    assert sent_now == []


async def test_a_client_that_stops_reading_is_dropped_and_told_so_at_the_end() -> None:
    sent_now: list[bytes] = []
    made: dict[str, Any] = {}
    payload = "x" * 16384

    def make() -> EventStream:
        outbound, control = Outbound(4, send_timeout_s=0.3), TurnControl()
        made.update(outbound=outbound, control=control, emitted=0)

        async def produce(emit: Emit) -> None:
            while True:  # a reply that never ends: only the drop can end it
                await emit(delta(payload))
                made["emitted"] += 1
                await asyncio.sleep(0.001)  # as a turn awaits its upstream

        return EventStream(outbound, produce, control, render, trailer=b"data: [DONE]\n\n")

    async with (
        served(make, sent_now) as (host, port),
        raw_client(host, port, rcvbuf=4096) as client,
    ):
        client.request()
        await eventually(lambda: "control" in made and made["control"].cancel_requested)
        status, got = await client.response()  # now read what the server could send
    assert status == 200 and made["outbound"].overflowed
    assert 0 < len(sent_now) <= made["emitted"] < 10_000
    *deltas, last = got.decode().split("\n\n")[:-1]
    assert deltas and all(frame.startswith("event: response.delta") for frame in deltas)
    assert last.startswith("event: error") and '"code":"slow_consumer"' in last  # no [DONE]


async def test_a_client_that_leaves_cancels_the_turn() -> None:
    sent_now: list[bytes] = []
    controls: list[TurnControl] = []
    ended = asyncio.Event()

    def make() -> EventStream:
        outbound = Outbound(8, send_timeout_s=5)
        control = TurnControl()
        controls.append(control)

        async def produce(emit: Emit) -> None:
            try:
                while True:
                    await emit(delta("more"))
                    await asyncio.sleep(0.005)
            finally:
                ended.set()

        return EventStream(outbound, produce, control, render)

    async with served(make, sent_now) as (host, port):
        async with raw_client(host, port) as client:
            client.request()
            await client.reader.readuntil(b"more")
        await asyncio.wait_for(ended.wait(), timeout=5)
    assert controls[0].cancel_requested and sent_now


async def test_a_send_that_fails_cuts_the_response_and_stops_the_turn() -> None:
    controls: list[TurnControl] = []
    ended = asyncio.Event()

    def failing(seq: int, event: ServerEvent) -> bytes:
        raise ValueError("cannot render")  # as any failure of the sending task

    def make() -> EventStream:
        outbound, control = Outbound(8, send_timeout_s=5), TurnControl()
        controls.append(control)

        async def produce(emit: Emit) -> None:
            try:
                await emit(delta("a"))
                await asyncio.sleep(5)  # stopped long before
            finally:
                ended.set()

        return EventStream(outbound, produce, control, failing)

    async with served(make, []) as (host, port), httpx.AsyncClient() as http:
        async with http.stream("GET", f"http://{host}:{port}/") as response:
            assert response.status_code == 200  # the head went before the first event failed
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()  # the body breaks off: no clean end
        await asyncio.wait_for(ended.wait(), timeout=5)
    assert controls[0].cancel_requested
