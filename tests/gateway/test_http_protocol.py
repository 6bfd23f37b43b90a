"""`send_now` for a streamed HTTP response's body, served by a real uvicorn on loopback with the
gateway's httptools protocol, read by real clients (httpx, and h11 over a raw socket where the
test must control the reads): the pieces arrive whole, in order with the ASGI sends, and the
response still ends properly (keep-alive, pipelining); it declines before the head, for a body
with a length, to HEAD, on a paused transport and once the client has gone, and the ASGI send
then carries on as before."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import h11
import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.http_protocol import CoachHttpProtocol
from gateway.send_now import SendNow, send_now_of
from gateway.server import serving, uvicorn_config
from gateway.settings import Settings

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

START = {"type": "http.response.start", "status": 200, "headers": [(b"x-test", b"1")]}


def body(data: bytes, *, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def sender(scope: Scope) -> SendNow:
    send_now = send_now_of(scope)
    assert send_now is not None, "the protocol offers no send_now"
    return send_now


def write_until_declined(send_now: SendNow, payload: bytes) -> int:
    """Write `payload` until `send_now` declines (the client reads nothing yet: the transport
    fills and pauses); how many went."""
    sent = 0
    while send_now(payload):
        sent += 1
        assert sent < 10_000, "the transport never paused"
    return sent


@contextlib.asynccontextmanager
async def served(handler: Handler) -> AsyncIterator[tuple[str, int]]:
    """A uvicorn with the gateway's HTTP protocol, serving `handler` for each request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await handler(scope, receive, send)

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_config=None, http=CoachHttpProtocol
    )
    async with serving(uvicorn.Server(config)) as port:
        yield "127.0.0.1", port


class RawClient:
    """HTTP/1.1 over a plain socket, parsed by h11: the test decides when to read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(our_role=h11.CLIENT)

    def request(self, method: str = "GET", path: str = "/") -> None:
        headers = [("host", "test")]
        self.writer.write(self.conn.send(h11.Request(method=method, target=path, headers=headers)))
        self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")

    async def response(self) -> tuple[int, bytes]:
        """The next response's status and whole body."""
        status, parts = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, b"".join(parts)
            else:
                raise AssertionError(f"unexpected {event!r}")


@contextlib.asynccontextmanager
async def raw_client(
    host: str, port: int, *, rcvbuf: int | None = None
) -> AsyncIterator[RawClient]:
    sock = socket.socket()
    if rcvbuf is not None:  # a tiny receive window: unread data backs up to the server
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
    try:
        yield RawClient(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def test_the_gateway_serves_http_with_this_protocol() -> None:
    config = uvicorn_config(None, Settings(), host="127.0.0.1", port=0)  # type: ignore[arg-type]
    assert config.http is CoachHttpProtocol


async def test_pieces_sent_now_arrive_in_order_and_the_connection_is_kept() -> None:
    said: list[bool] = []
    clients: list[Any] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = sender(scope)
        clients.append(scope["client"])
        said.append(send_now(b"too early"))  # no head yet: declined
        await send(START)
        said.extend(send_now(f"now {i};".encode()) for i in range(3))
        await send(body(b"asgi;"))
        said.append(send_now(b"now 3;"))
        await send(body(b"end", more=False))
        said.append(send_now(b"too late"))  # the response is finished: declined

    async with served(handler) as (host, port), httpx.AsyncClient() as http:
        url = f"http://{host}:{port}/"
        first = await http.get(url)
        second = await http.get(url)
    for response in (first, second):
        assert response.status_code == 200 and response.headers["x-test"] == "1"
        assert response.content == b"now 0;now 1;now 2;asgi;now 3;end"
    assert said == [False, True, True, True, True, False] * 2
    assert clients[0] == clients[1], "the second request did not reuse the connection"


async def test_each_pipelined_request_writes_its_own_response() -> None:
    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = sender(scope)
        await send(START)
        name = scope["path"].encode()
        for i in range(3):
            assert send_now(name + b" %d;" % i)
            await asyncio.sleep(0.01)  # the next request is already waiting behind this one
        await send(body(b"", more=False))

    async with served(handler) as (host, port), raw_client(host, port) as client:
        client.request(path="/a")
        # /b goes out before /a is answered; h11 (one request at a time) is told of it after.
        client.writer.write(b"GET /b HTTP/1.1\r\nhost: test\r\n\r\n")
        first = await client.response()
        client.conn.send(h11.Request(method="GET", target="/b", headers=[("host", "test")]))
        client.conn.send(h11.EndOfMessage())
        second = await client.response()
    assert first == (200, b"/a 0;/a 1;/a 2;")
    assert second == (200, b"/b 0;/b 1;/b 2;")


async def test_a_body_with_a_length_or_a_head_request_is_declined() -> None:
    said: list[bool] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = sender(scope)
        if scope["method"] == "HEAD":
            await send(START)
        else:
            await send({**START, "headers": [(b"content-length", b"4")]})
        said.append(send_now(b"data"))  # not chunked (or no body at all): declined
        said.append(send_now(b""))  # nothing to send: declined (an empty chunk ends a body)
        await send(body(b"" if scope["method"] == "HEAD" else b"data", more=False))

    async with served(handler) as (host, port), httpx.AsyncClient() as http:
        sized = await http.get(f"http://{host}:{port}/")
        head = await http.head(f"http://{host}:{port}/")
    assert sized.content == b"data" and head.status_code == 200 and head.content == b""
    assert said == [False, False, False, False]


async def test_a_paused_transport_declines_and_the_asgi_send_waits_for_it() -> None:
    declined_after: list[int] = []
    declined = asyncio.Event()
    payload = b"x" * 65536

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = sender(scope)
        await send(START)
        declined_after.append(write_until_declined(send_now, payload))
        declined.set()
        await send(body(b"last", more=False))  # waits until the client reads

    async with served(handler) as (host, port), raw_client(host, port, rcvbuf=4096) as client:
        client.request()
        await declined.wait()
        status, got = await client.response()
    assert declined_after[0] > 0
    assert status == 200 and got == payload * declined_after[0] + b"last"


async def test_after_the_client_left_it_declines() -> None:
    outcome: list[bool] = []
    done = asyncio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = sender(scope)
        await send(START)
        assert send_now(b"first")
        while (await receive())["type"] != "http.disconnect":
            pass
        outcome.append(send_now(b"too late"))
        await send(body(b"too late", more=False))  # uvicorn drops it quietly, as before
        done.set()

    async with served(handler) as (host, port):
        async with raw_client(host, port) as client:
            client.request()
            await client.reader.readuntil(b"first")
        await done.wait()
    assert outcome == [False]


def test_a_scope_without_the_extension_has_no_send_now() -> None:
    assert send_now_of({"type": "http"}) is None
    assert send_now_of({"type": "http", "extensions": {"http.response.trailers": {}}}) is None
