"""The floor: the least a Python relay must do per token, as a benchmark's yardstick.

Not the gateway and not a product: a relay written straight on uvloop's protocols, with no
framework, no quotas, routing, failover, stall deadlines, live feeds or records. It speaks just
enough of the realtime protocol for `loadtests.bench_client --mode ws` (`session.created`, then
`input_text` -> `response.started`, `response.delta`..., `response.completed` with the same
`timings`), and for each turn POSTs a streaming chat completion to an OpenAI-compatible upstream
over one keep-alive HTTP/1.1 connection per session. Per upstream chunk it does what any relay
must: decode the chunked body, then the SSE event and the chunk with the gateway's own
`SseDecoder` and OpenAI chunk reader (`providers.native_chat.OPENAI.read_event`), and write one
WebSocket frame. `loadtests.bench --floor` runs it beside the gateway, so that a run shows how
far the gateway's CPU per event is from what Python itself costs on the same machine. A plain HTTP
request (no WebSocket key) gets `200 ok`: the bench's readiness check. It reads what the sim
sends (a chunked body) and nothing more general: a yardstick, not a client. Its buffers are
bounded: a client frame over `MAX_FRAME_BYTES` closes the socket with 1009, an SSE event over
the decoder's limit fails the turn. One turn at a time per socket: an `input_text` while one
runs gets an `error` (`turn_running`).

With `--client native` each turn instead runs as a task with the gateway's own pieces in the
gateway's order: its chat client (`providers.native_chat.NativeChat`, with its read
deadline), a stall deadline on each next chunk as the router keeps, a `ResponseDelta` per chunk
and the gateway's writer (`gateway.outbound.SocketWriter`; it awaits each send here, where the
gateway writes the frame with `send_now`); only the framework and
the features stay out (Starlette, uvicorn, `websockets`, auth, quotas, routing, failover, live
feeds, metrics, turn records). Beside the plain floor it shows what the gateway's async
architecture and upstream client cost, apart from what its framework and features do.

    python -m loadtests.micro.floor_relay --port 8100 --upstream http://127.0.0.1:8001
        [--client native]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Literal, cast
from urllib.parse import urlsplit

import orjson

from gateway.outbound import Outbound, SocketWriter
from providers import wire
from providers.chat import ChatChunk, ChatRequest, Message
from providers.errors import ProviderError, UpstreamTimeout
from providers.native_chat import OPENAI, NativeChat
from providers.resilience.config import DeadlineConfig
from providers.resilience.stall import StallDeadline
from providers.sse import SseDecoder
from streams.events import ResponseDelta

__all__ = ["Client", "serving", "ws_frame"]

Client = Literal["hand", "native"]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
_TOO_BIG = 1009  # WebSocket close code: message too big
MAX_FRAME_BYTES = 64 * 1024  # as the gateway's default `max_message_bytes`
MODEL = "gpt-4o-mini"
# As the bench runs the gateway: the router's default stall deadline, the send queue that
# `bench_procs.gateway_env` sets, the default send timeout.
STALL_S = DeadlineConfig().stall_s
SEND_QUEUE = 1024
SEND_TIMEOUT_S = 10.0


def ws_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One unmasked, final frame (server to client)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 1 << 16:
        return bytes((0x80 | opcode, 126)) + struct.pack("!H", size) + payload
    return bytes((0x80 | opcode, 127)) + struct.pack("!Q", size) + payload


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream: a chunked SSE body per turn."""

    def __init__(self, session: _Session) -> None:
        self._session = session
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._decoder = SseDecoder()
        self._tally = wire.StreamTally(model=MODEL)
        self._state = "idle"  # headers -> size -> data -> ... -> size (0) -> trailer -> idle
        self._need = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state != "idle":
            self._state = "idle"
            self._session.turn_failed("the upstream closed the connection mid-reply")
        self._session.upstream_lost(self)

    def request(self, head_and_body: bytes) -> None:
        assert self.transport is not None
        self._state, self._buf = "headers", b""
        self._decoder, self._tally = SseDecoder(), wire.StreamTally(model=MODEL)
        self.transport.write(head_and_body)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while buf and self._state != "idle":
            if self._state == "headers":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                status = buf[9:12]
                buf = buf[end + 4 :]
                if status != b"200":
                    self._fail(f"upstream status {status.decode()}")
                    return
                self._state = "size"
            elif self._state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                self._need = int(buf[:end].split(b";", 1)[0], 16)
                buf = buf[end + 2 :]
                self._state = "data" if self._need else "trailer"
            elif self._state == "data":
                if len(buf) < self._need + 2:
                    break
                try:
                    self._events(buf[: self._need])
                except ProviderError as exc:  # an error event, a broken chunk, an event too big
                    self._fail(str(exc))
                    return
                buf = buf[self._need + 2 :]
                self._state = "size"
            else:  # the trailer: an empty line ends the body
                if len(buf) < 2:
                    break
                buf = buf[2:]
                self._state = "idle"
                self._session.turn_done()
        self._buf = buf

    def _events(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if text := OPENAI.read_event(self._tally, event, "floor"):
                self._session.delta(text)

    def _fail(self, why: str) -> None:
        """End the turn with `response.failed`; the rest of the body is not read, so the
        connection is spent."""
        self._state = "idle"
        self._session.turn_failed(why)
        assert self.transport is not None
        self.transport.close()


class _Session(asyncio.Protocol):
    """One client's WebSocket, and its turns."""

    def __init__(
        self,
        connect_upstream: Callable[[_Session], None],
        host: str,
        native: NativeChat | None = None,
    ) -> None:
        self._connect_upstream = connect_upstream
        self._host = host
        self._native = native
        self._turn: asyncio.Task[None] | None = None  # with the native client
        self._in_turn = False
        self._writer: SocketWriter | None = None
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._open = False
        self.upstream: _Upstream | None = None
        self._request = b""
        self._turn_id = b""
        self._received = self._sent = 0.0
        self._first: float | None = None
        self._texts: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self._native is not None:
            # `_send_frame` never waits, so an event never queues behind another: the writer's
            # queue stays empty and needs no writer task.
            outbound = Outbound(SEND_QUEUE, SEND_TIMEOUT_S, on_overflow=self.transport.close)
            self._writer = SocketWriter(outbound, self._send_frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        if self._turn is not None:
            self._turn.cancel()
        if self._writer is not None:
            self._writer.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            self._handshake(buf[:end])
            if not self._open:
                return
            buf = buf[end + 4 :]
        self._buf = self._frames(buf)

    def _handshake(self, head: bytes) -> None:
        assert self.transport is not None
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if not key:  # a plain HTTP request: the bench's readiness check
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self._open = True
        created = {"type": "session.created", "session_id": "floor", "user_id": "floor"}
        self.transport.write(ws_frame(orjson.dumps({**created, "limits": {}})))

    def _frames(self, buf: bytes) -> bytes:
        assert self.transport is not None
        while len(buf) >= 2:
            size, offset = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    break
                (size,), offset = struct.unpack("!H", buf[2:4]), 4
            elif size == 127:
                if len(buf) < 10:
                    break
                (size,), offset = struct.unpack("!Q", buf[2:10]), 10
            if size > MAX_FRAME_BYTES:
                self.transport.write(ws_frame(struct.pack("!H", _TOO_BIG), _CLOSE))
                self.transport.close()
                return b""
            if len(buf) < offset + 4 + size:
                break
            mask = buf[offset : offset + 4]
            body = buf[offset + 4 : offset + 4 + size]
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(body))
            opcode = buf[0] & 0x0F
            buf = buf[offset + 4 + size :]
            if opcode == _TEXT:
                self._on_text(payload)
            elif opcode == _PING:
                self.transport.write(ws_frame(payload, _PONG))
            elif opcode == _CLOSE:
                self.transport.write(ws_frame(payload[:2], _CLOSE))
                self.transport.close()
                return b""
        return buf

    def _on_text(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        if message.get("type") != "input_text":
            return
        if self._in_turn:
            assert self.transport is not None
            busy = {"type": "error", "code": "turn_running", "message": "one turn at a time"}
            self.transport.write(ws_frame(orjson.dumps(busy)))
            return
        self._in_turn = True
        self._turn_id = str(message.get("turn_id", "")).encode()
        self._received = time.perf_counter()
        if self._native is not None:
            self._start_native(self._native, str(message.get("text", "")))
            return
        body = orjson.dumps(
            {
                "model": MODEL,
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": message.get("text", "")}],
            }
        )
        self._request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + self._host.encode() + b"\r\n"
            b"Authorization: Bearer sk-sim\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        if self.upstream is None:
            self._connect_upstream(self)  # calls `upstream_ready` once connected
        else:
            self.upstream_ready(self.upstream)

    def upstream_ready(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        self._started()
        upstream.request(self._request)

    def _started(self) -> None:
        assert self.transport is not None
        started = b'{"type":"response.started","turn_id":"' + self._turn_id + b'"}'
        self.transport.write(ws_frame(started))
        self._first, self._texts = None, []
        self._sent = time.perf_counter()

    def _start_native(self, native: NativeChat, text: str) -> None:
        request = ChatRequest(model=MODEL, messages=(Message("user", text),), max_tokens=512)
        self._started()
        self._turn = asyncio.get_running_loop().create_task(self._relay(native, request))

    async def _relay(self, native: NativeChat, request: ChatRequest) -> None:
        """One turn as the gateway streams it (see the module docstring)."""
        assert self._writer is not None
        turn_id = self._turn_id.decode()
        try:
            async with contextlib.aclosing(_chunk_texts(native.stream(request))) as texts:
                async for text in texts:
                    if self._first is None:
                        self._first = time.perf_counter()
                    self._texts.append(text)
                    await self._writer.emit(ResponseDelta(turn_id, text))
        except ProviderError as exc:
            self.turn_failed(str(exc))
            return
        self.turn_done()

    async def _send_frame(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(ws_frame(data))

    def upstream_lost(self, upstream: _Upstream) -> None:
        if self.upstream is upstream:
            self.upstream = None

    def delta(self, text: str) -> None:
        assert self.transport is not None
        if self._first is None:
            self._first = time.perf_counter()
        self._texts.append(text)
        head = b'{"type":"response.delta","turn_id":"' + self._turn_id + b'","text":'
        self.transport.write(ws_frame(head + orjson.dumps(text) + b"}"))

    def turn_done(self) -> None:
        assert self.transport is not None
        self._in_turn = False
        first = self._first or time.perf_counter()
        timings = {
            "ttft_ms": (first - self._received) * 1000,
            "upstream_ttft_ms": (first - self._sent) * 1000,
        }
        completed = {
            "type": "response.completed",
            "turn_id": self._turn_id.decode(),
            "text": "".join(self._texts),
            "timings": timings,
        }
        self.transport.write(ws_frame(orjson.dumps(completed)))

    def turn_failed(self, why: str) -> None:
        assert self.transport is not None
        self._in_turn = False
        failed = {
            "type": "response.failed",
            "turn_id": self._turn_id.decode(),
            "error": {"code": "upstream_error", "message": why},
        }
        self.transport.write(ws_frame(orjson.dumps(failed)))


async def _chunk_texts(chunks: AsyncIterator[ChatChunk]) -> AsyncGenerator[str, None]:
    """The text of each chunk, each wait for the next one bounded as the router bounds it."""
    try:
        with StallDeadline(STALL_S) as stall:
            while True:
                try:
                    chunk = await stall.wait(anext(chunks))
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise UpstreamTimeout(f"upstream stalled: {exc}") from exc
                if chunk.text:
                    yield chunk.text
    finally:
        aclose = getattr(chunks, "aclose", None)  # the upstream response goes back to the pool
        if aclose is not None:
            await aclose()


@contextlib.asynccontextmanager
async def serving(
    host: str, port: int, upstream_url: str, *, client: Client = "hand"
) -> AsyncIterator[asyncio.Server]:
    """Listen on `host:port`, relaying to `upstream_url` (http://host:port), until the block
    exits."""
    loop = asyncio.get_running_loop()
    target = urlsplit(upstream_url)
    up_host, up_port = target.hostname or "127.0.0.1", target.port or 80
    connecting: set[asyncio.Task[None]] = set()

    def connect_upstream(session: _Session) -> None:
        async def connect() -> None:
            try:
                _, upstream = await loop.create_connection(
                    lambda: _Upstream(session), up_host, up_port
                )
            except OSError as exc:
                session.turn_failed(f"cannot reach the upstream: {exc}")
                return
            session.upstream_ready(upstream)

        task = loop.create_task(connect())
        connecting.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(connecting.discard)

    host_header = target.netloc
    native = None
    if client == "native":
        native = NativeChat("floor", OPENAI, api_key="sk-sim", base_url=f"{upstream_url}/v1")
    server = await loop.create_server(
        lambda: _Session(connect_upstream, host_header, native), host, port, backlog=4096
    )
    try:
        async with server:
            yield server
    finally:
        if native is not None:
            await native.aclose()


async def _main(host: str, port: int, upstream: str, client: Client) -> None:
    async with serving(host, port, upstream, client=client) as server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.micro.floor_relay", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port of the upstream")
    parser.add_argument(
        "--client",
        choices=["hand", "native"],
        default="hand",
        help="read the upstream by hand (the floor), or with the gateway's chat client and "
        "send path",
    )
    args = parser.parse_args(argv)
    run = _main(args.host, args.port, args.upstream, args.client)
    try:
        import uvloop
    except ImportError:  # the standard library's loop: slower, still a floor to compare with
        asyncio.run(run)
    else:
        uvloop.run(run)


if __name__ == "__main__":
    main()
