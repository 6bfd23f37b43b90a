"""`send_now`, the WebSocket protocol's send that does not wait, served by a real uvicorn on
loopback to a real `websockets` client: frames arrive whole and in order, compressed when the
client asked for it; a paused transport or a closing connection makes it decline, and the ASGI
send then carries on as before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from gateway.realtime import Connection
from gateway.runtime import Gateway
from gateway.send_now import send_now_of
from gateway.server import RunningGateway, serving, uvicorn_config
from gateway.settings import Settings
from gateway.ws_protocol import CoachWebSocketProtocol
from tests.gateway.test_http_protocol import write_until_declined
from tests.gateway.wsclient import ws_client

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


@contextlib.asynccontextmanager
async def served(handler: Handler) -> AsyncIterator[str]:
    """A uvicorn with the gateway's WebSocket protocol, serving `handler` for each socket."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await handler(scope, receive, send)

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_config=None, ws=CoachWebSocketProtocol
    )
    async with serving(uvicorn.Server(config)) as port:
        yield f"ws://127.0.0.1:{port}/"


def test_the_gateway_serves_websockets_with_this_protocol() -> None:
    config = uvicorn_config(None, Settings(), host="127.0.0.1", port=0)  # type: ignore[arg-type]
    assert config.ws is CoachWebSocketProtocol


async def test_a_realtime_connection_writes_its_tokens_with_send_now(
    gateway: RunningGateway, token: Callable[..., str]
) -> None:
    """The extension reaches the realtime endpoint through Starlette and the middleware (were it
    lost, say by a uvicorn that renames what the protocol overrides, tokens would still flow,
    slower, through the ASGI send)."""
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()  # session.created
        connections = [c for c in gateway_of_app(gateway).connections if isinstance(c, Connection)]
        assert len(connections) == 1
        assert connections[0].writer._send_now is not None
        await client.send(type="input_text", text="How do I warm up?", turn_id="t1")
        events = await client.until("response.completed", "response.failed")
    assert events[-1]["type"] == "response.completed"
    deltas = [e["text"] for e in events if e["type"] == "response.delta"]
    assert deltas and "".join(deltas) == events[-1]["text"]


def gateway_of_app(running: RunningGateway) -> Gateway:
    gateway: Gateway = running.app.state.gateway
    return gateway


async def test_frames_sent_now_arrive_in_order_compressed_or_not() -> None:
    said: list[bool] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = send_now_of(scope)
        assert send_now is not None
        said.extend(send_now(f"frame {i} ".encode() * 50) for i in range(3))
        await send({"type": "websocket.send", "text": "after"})  # the ASGI path, behind them
        await receive()  # until the client leaves

    async with served(handler) as url:
        for compression in ("deflate", None):
            said.clear()
            async with connect(url, compression=compression) as ws:
                got = [await ws.recv() for _ in range(4)]
                negotiated = [type(ext).__name__ for ext in ws.protocol.extensions]
            assert said == [True, True, True]
            assert got == [*(f"frame {i} " * 50 for i in range(3)), "after"]
            assert negotiated == (["PerMessageDeflate"] if compression else [])


async def test_a_paused_transport_declines_and_the_asgi_send_waits_for_it() -> None:
    declined_after: list[int] = []
    declined = asyncio.Event()
    payload = b"x" * 65536

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = send_now_of(scope)
        assert send_now is not None
        declined_after.append(write_until_declined(send_now, payload))
        declined.set()
        await send({"type": "websocket.send", "text": "last"})  # waits until the client reads
        await receive()

    async with (
        served(handler) as url,
        connect(url, compression=None, max_size=None, max_queue=1) as ws,
    ):
        await declined.wait()
        got = [await ws.recv() for _ in range(declined_after[0] + 1)]
    assert declined_after[0] > 0
    assert got[:-1] == [payload.decode()] * declined_after[0] and got[-1] == "last"


async def test_after_the_client_closed_it_declines_and_the_asgi_send_reports_the_disconnect() -> (
    None
):
    outcome: list[object] = []
    done = asyncio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        send_now = send_now_of(scope)
        assert send_now is not None
        assert (await receive())["type"] == "websocket.disconnect"
        outcome.append(send_now(b"too late"))
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:  # uvicorn's ClientDisconnected
            outcome.append(type(exc).__name__)
        done.set()

    async with served(handler) as url:
        async with connect(url) as ws:
            await ws.close()
        await done.wait()
    assert outcome == [False, "ClientDisconnected"]


def test_a_scope_without_the_extension_has_no_send_now() -> None:
    assert send_now_of({"type": "websocket"}) is None
    assert send_now_of({"type": "websocket", "extensions": {"websocket.http.response": {}}}) is None


async def test_a_text_message_that_is_not_utf8_closes_1007_without_a_traceback(
    gateway: RunningGateway, token: Callable[..., str], caplog: Any
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()  # session.created
        await client.conn.send(b"\xff\xfe not UTF-8", text=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.recv(), 5)
        assert client.conn.close_code == 1007
        assert client.conn.close_reason == "text message is not valid UTF-8"
    assert not [r for r in caplog.records if r.exc_info], "a client's mistake logs no traceback"
