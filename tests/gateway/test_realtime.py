"""`/v1/realtime` over a real uvicorn, the real simulated upstream and the `websockets` client."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.server import RunningGateway, running_gateway
from tests.conftest import eventually, make_settings
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]


async def test_text_turn_streams_deltas_and_completes(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        created = await client.recv()
        assert created["type"] == "session.created"
        assert created["user_id"] == "alice"
        assert created["limits"]["concurrent_streams"] >= 1
        await client.send(
            type="input_text", text="How do I breathe before a high note?", turn_id="t1"
        )
        events = await client.until("response.completed", "response.failed")
    types = [e["type"] for e in events]
    assert types[0] == "response.started"
    assert types[-1] == "response.completed"
    deltas = [e["text"] for e in events if e["type"] == "response.delta"]
    assert len(deltas) > 3
    done = events[-1]
    assert done["turn_id"] == "t1"
    assert done["text"] == "".join(deltas)
    assert done["finish_reason"] == "stop"
    assert done["provider"] == "primary"
    assert done["usage"]["output_tokens"] > 0
    timings = done["timings"]
    assert timings["ttft_ms"] >= timings["upstream_ttft_ms"] > 0
    assert timings["total_ms"] >= timings["ttft_ms"]


async def test_session_update_and_ping(gateway: RunningGateway, token: Token) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        session = {"coach": "voice", "focus_ids": ["pitch_accuracy"]}
        await client.send(type="session.update", session=session)
        updated = await client.recv()
        assert updated["type"] == "session.updated"
        assert updated["session"]["coach"] == "voice"
        assert updated["session"]["focus_ids"] == ["pitch_accuracy"]
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ('["a list"]', "invalid_event"),
        ('{"type": "no.such.type"}', "unknown_type"),
        ('{"type": "input_text", "text": "   "}', "empty_text"),
        ('{"type": "session.update", "session": {"voice": 3}}', "invalid_session"),
        ('{"type": "metrics.push", "metrics": {"pitch": "high"}}', "invalid_metrics"),
        ('{"type": "response.cancel"}', "no_active_turn"),
    ],
)
async def test_bad_frames_get_an_error_and_keep_the_connection(
    gateway: RunningGateway, token: Token, frame: str, code: str
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.conn.send(frame)
        error = await client.recv()
        assert error["type"] == "error"
        assert error["code"] == code
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"


async def test_oversized_text_frame_closes_1009(gateway: RunningGateway, token: Token) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="input_text", text="x" * (65 * 1024))
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize("kind", ["missing", "expired", "forged", "garbage"])
async def test_bad_token_closes_4401(gateway: RunningGateway, token: Token, kind: str) -> None:
    from gateway.auth import mint_token

    tokens = {
        "missing": None,
        "expired": token(ttl_s=-10),
        "forged": mint_token("some-other-secret-some-other-secret-xx", "alice"),
        "garbage": "not.a.jwt",
    }
    async with ws_client(gateway.ws_url, tokens[kind]) as client:
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_browser_auth_by_subprotocol_and_query(gateway: RunningGateway, token: Token) -> None:
    async with ws_client(
        gateway.ws_url,
        subprotocols=["coach.v1", f"bearer.{token('bob')}"],
    ) as client:
        assert client.conn.subprotocol == "coach.v1"
        assert (await client.recv())["user_id"] == "bob"
    async with ws_client(gateway.ws_url, query=f"?access_token={token('carol')}") as client:
        assert (await client.recv())["user_id"] == "carol"


async def test_foreign_origin_is_refused(gateway: RunningGateway, token: Token) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(gateway.ws_url, token(), origin="http://evil.example"):
            pass
    assert info.value.response.status_code == 403
    async with ws_client(gateway.ws_url, token(), origin="http://allowed.example") as client:
        assert (await client.recv())["type"] == "session.created"


async def test_resume_keeps_session_and_refuses_other_users(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token("dana")) as client:
        session_id = (await client.recv())["session_id"]
    async with ws_client(
        gateway.ws_url, token("dana"), query=f"?session_id={session_id}"
    ) as client:
        created = await client.recv()
        assert created["session_id"] == session_id and created["resumed"] is True
    async with ws_client(gateway.ws_url, token("eve"), query=f"?session_id={session_id}") as client:
        error = await client.recv()
        assert error == {**error, "type": "error", "code": "session_not_found"}
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_cancel_stops_the_stream(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(tokens_per_s=40, reply_tokens=200)
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="input_text", text="Tell me a long story", turn_id="long")
        await client.until("response.delta")
        await client.send(type="input_text", text="second", turn_id="other")
        busy = await client.until("error")
        assert busy[-1]["code"] == "turn_in_progress"
        await client.send(type="response.cancel", turn_id="long")
        events = await client.until("response.completed")
        done = events[-1]
        assert done["finish_reason"] == "cancelled"
        sent = "".join(e["text"] for e in busy + events if e["type"] == "response.delta")
        assert done["text"].endswith(sent)
        assert done["usage"]["output_tokens"] < 200
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"  # no delta arrives after the cancel


async def test_upstream_failure_before_first_token_fails_the_turn(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(fail_rate=1.0, fail_status=500)
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="input_text", text="hello", turn_id="f1")
        events = await client.until("response.failed", "response.completed")
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["partial_text"] == ""
    assert failed["error"]["retryable"] is True


def _small_window_socket(url: str) -> socket.socket:
    """A client socket with a tiny receive buffer, so unread data backs up to the server."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def _shrink_server_send_buffers(gw: RunningGateway) -> None:
    """Small kernel and transport buffers on the server's side of every open connection, so
    a client that stops reading blocks the server's sends within kilobytes, not megabytes."""
    for protocol in gw.server.server_state.connections:
        transport = protocol.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.set_write_buffer_limits(high=4096)


async def test_slow_reader_is_dropped(fast_sim: Any, tmp_path: Path, token: Token) -> None:
    await fast_sim.set_knobs(tokens_per_s=0, reply_tokens=20_000)
    settings = make_settings(
        fast_sim.url, tmp_path, send_queue_size=8, send_timeout_s=0.5, max_reply_tokens=20_000
    )
    async with running_gateway(settings) as gw:
        sock = _small_window_socket(gw.ws_url)
        async with ws_client(gw.ws_url, token(), max_queue=1, sock=sock) as client:
            await client.recv()
            _shrink_server_send_buffers(gw)
            await client.send(type="input_text", text="flood me")
            # Do not read: the socket backs up, the bounded queue stays full past the send
            # timeout, and the server drops the connection instead of buffering the reply.
            gateway = gw.app.state.gateway
            await eventually(lambda: not gateway.connections, timeout_s=20)
            received = 0
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.recv()
                    received += 1
            assert received < 20_000


async def test_client_leaving_mid_stream_ends_the_turn_quietly(
    fast_sim: Any, tmp_path: Path, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    await fast_sim.set_knobs(tokens_per_s=0, reply_tokens=20_000)
    settings = make_settings(fast_sim.url, tmp_path, max_reply_tokens=20_000)
    async with running_gateway(settings) as gw:
        gateway = gw.app.state.gateway
        # The client leaves while the server is sending: by a close frame (it stops reading, so
        # it gives up waiting for the server's close after 0.2 s) or by dropping the socket.
        for attempt in range(6):
            async with ws_client(gw.ws_url, token(), close_timeout=0.2) as client:
                await client.recv()
                await client.send(type="input_text", text="flood me", turn_id=f"t{attempt}")
                await client.until("response.delta")
                if attempt % 2:
                    client.conn.transport.abort()
            await eventually(lambda: not gateway.connections, timeout_s=4)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_shutdown_finishes_the_turn_then_closes_1012(
    fast_sim: Any, tmp_path: Path, token: Token
) -> None:
    await fast_sim.set_knobs(tokens_per_s=50, reply_tokens=20)
    async with (
        running_gateway(make_settings(fast_sim.url, tmp_path)) as gw,
        ws_client(gw.ws_url, token()) as client,
    ):
        await client.recv()
        await client.send(type="input_text", text="one more", turn_id="last")
        await client.until("response.delta")
        gw.server.should_exit = True
        events = await client.until("response.completed", "response.failed")
        assert events[-1]["type"] == "response.completed"
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012


class _HeldStorage:
    """A turn observer that holds every turn's bookkeeping until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting: list[str] = []
        self.reported: list[str] = []

    async def turn_finished(self, record: Any) -> None:
        self.waiting.append(record.turn_id)
        await self.release.wait()
        self.reported.append(record.turn_id)


async def test_the_final_event_waits_until_the_turn_is_kept(
    fast_sim: Any, tmp_path: Path, token: Token
) -> None:
    async with running_gateway(make_settings(fast_sim.url, tmp_path)) as gw:
        storage = _HeldStorage()
        gw.app.state.gateway.engine.observers.append(storage)
        async with ws_client(gw.ws_url, token()) as client:
            await client.recv()
            await client.send(type="input_text", text="first", turn_id="one")
            await client.until("response.delta")
            await eventually(lambda: storage.waiting == ["one"], timeout_s=5)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await client.until("response.completed")
            storage.release.set()
            completed = (await client.until("response.completed"))[-1]
            assert completed["turn_id"] == "one" and completed["stored"] == "none"
        assert storage.reported == ["one"]
