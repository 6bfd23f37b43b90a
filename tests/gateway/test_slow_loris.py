"""The request-head deadline (slow-loris), on a real uvicorn running the gateway with its HTTP
protocol, driven over raw sockets: half a head, or nothing, is closed at the deadline (a JSON
408 when a head had begun), on a new connection and on a kept-alive one; a head sent slowly but
in time is answered, and neither a long response nor a WebSocket is cut by the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.server import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.gateway.wsclient import ws_client

DEADLINE_S = 0.5
WAIT_S = 10.0  # a socket still open this long after the deadline fails the test
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\nUser-Agent: sl"
HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
async def gateway(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(fast_sim.url, tmp_path, request_head_timeout_s=DEADLINE_S)
    async with running_gateway(settings) as running:
        yield running


Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(gateway: RunningGateway) -> Socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def until_closed(sock: Socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    reader, writer = sock
    try:
        async with asyncio.timeout(DEADLINE_S + WAIT_S):
            return await reader.read()
    finally:
        writer.close()


async def one_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one response with a content-length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(v) for k, _, v in (x.partition(": ") for x in lines) if k == "content-length")
    return int(lines[0].split()[1]), await reader.readexactly(length)


def assert_timed_out(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_timeout"
    assert f"{DEADLINE_S:g} s" in error["message"]


async def test_half_a_head_is_closed_at_the_deadline_while_a_full_request_is_answered(
    gateway: RunningGateway,
) -> None:
    slow = await connect(gateway)
    slow[1].write(HALF_HEAD)
    reader, writer = await connect(gateway)
    writer.write(HEAD)
    assert (await one_response(reader))[0] == 200
    writer.close()
    assert_timed_out(await until_closed(slow))


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    gateway: RunningGateway,
) -> None:
    assert await until_closed(await connect(gateway)) == b""


async def test_a_head_sent_slowly_but_in_time_is_answered(gateway: RunningGateway) -> None:
    reader, writer = await connect(gateway)
    for i in range(0, len(HEAD), 8):
        writer.write(HEAD[i : i + 8])
        await asyncio.sleep(DEADLINE_S / 20)
    assert (await one_response(reader))[0] == 200
    writer.close()


async def test_a_kept_alive_connection_has_the_deadline_again_after_each_response(
    gateway: RunningGateway,
) -> None:
    reader, writer = await connect(gateway)
    for _ in range(3):
        writer.write(HEAD)
        assert (await one_response(reader))[0] == 200
    writer.write(HALF_HEAD)
    assert_timed_out(await until_closed((reader, writer)))


async def test_a_response_longer_than_the_deadline_is_not_cut(
    gateway: RunningGateway, fast_sim: Any, token: Callable[..., str]
) -> None:
    """The deadline is for the head: a turn streamed for longer, then a next request on the
    same connection, go through."""
    await fast_sim.set_knobs(ttft_ms=int(DEADLINE_S * 3000))
    reader, writer = await connect(gateway)
    body = orjson.dumps({"message": "How do I warm up?"})
    writer.write(
        b"POST /v1/chat HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %b\r\nContent-Length: %d\r\n\r\n%b"
        % (token().encode(), len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    stream = await reader.readuntil(b"0\r\n\r\n")  # the chunked body's end
    assert b"event: response.completed" in stream
    writer.write(HEAD)
    assert (await one_response(reader))[0] == 200
    writer.close()


async def test_a_websocket_outlives_the_deadline(
    gateway: RunningGateway, token: Callable[..., str]
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await asyncio.sleep(DEADLINE_S * 3)
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"
