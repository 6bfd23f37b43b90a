"""Inbound bounds of one WebSocket (frames and bytes per second), on a real uvicorn with the
gateway's protocols, the real simulated upstream and the `websockets` client: a flood of
messages, of bytes, of protocol pings or of continuation frames gets one `error` event and a
1008 close while another user's connection keeps working; a voice client streaming audio in
real time is never closed. The token buckets themselves on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.inbound import Exceeded, InboundBounds
from gateway.server import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.gateway.wsclient import Client, ws_client
from tests.speech import SENTENCES, silence, speak

Token = Callable[..., str]
METRICS = orjson.dumps(
    {"type": "metrics.push", "metrics": {f"metric_{i}": i / 32 for i in range(32)}}
).decode()
FLOOD_S = 20.0  # a flood that is never stopped ends here, failing the test


# -- the buckets, on a fake clock


def test_a_burst_of_twice_the_rate_passes_and_the_next_frame_does_not() -> None:
    bounds = InboundBounds(10, 1_000_000, now=0.0)
    assert all(bounds.charge(1, now=0.0) is None for _ in range(20))
    assert bounds.charge(1, now=0.0) == Exceeded("frames", 10.0)


def test_a_steady_rate_at_the_bound_passes_for_ever() -> None:
    bounds = InboundBounds(10, 1_000, now=0.0)
    for i in range(10_000):
        assert bounds.charge(100, now=i / 10) is None


def test_the_buckets_refill_at_their_rate_up_to_the_burst() -> None:
    bounds = InboundBounds(10, 1_000_000, now=0.0)
    for _ in range(20):
        bounds.charge(0, now=0.0)
    assert bounds.charge(0, now=0.05) == Exceeded("frames", 10.0)  # half a frame came back
    assert bounds.charge(0, now=0.25) is None  # two more: one for this frame, one for debt
    bounds = InboundBounds(10, 1_000_000, now=0.0)
    assert all(bounds.charge(0, now=3600.0) is None for _ in range(20))  # an hour idle: 20
    assert bounds.charge(0, now=3600.0) is not None


def test_bytes_are_bounded_apart_from_frames() -> None:
    bounds = InboundBounds(1_000, 1_000, now=0.0)
    assert bounds.charge(1_500, now=0.0) is None
    exceeded = bounds.charge(600, now=0.0)
    assert exceeded == Exceeded("bytes", 1_000.0)
    assert "1000 bytes per second" in exceeded.message
    assert len(exceeded.reason.encode()) <= 123
    assert bounds.charge(600, now=2.0) is None  # refilled (the debt of 100 repaid)


# -- over a real socket


async def assert_closed_for_flooding(client: Client, flood: Callable[[], Any], unit: str) -> str:
    """Run `flood()` until the server closes; the `error` event must come before a 1008
    close. Returns the error's message."""
    received: list[dict[str, Any]] = []

    async def read() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in client.conn:
                received.append(orjson.loads(raw))

    reader = asyncio.create_task(read())
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(FLOOD_S):
            while True:
                await flood()
                await asyncio.sleep(0)  # the server shares this loop: let it read
    async with asyncio.timeout(10):
        await reader
    assert closed.value.rcvd is not None, "the server never closed"
    assert closed.value.rcvd.code == 1008
    assert unit in closed.value.rcvd.reason
    errors = [e for e in received if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["inbound_rate_exceeded"]
    assert errors[0]["retryable"] is False
    assert received[-1] is errors[0], "the error event is the last thing said"
    message: str = errors[0]["message"]
    return message


@pytest.fixture
async def other_user(gateway: RunningGateway, token: Token) -> AsyncIterator[Client]:
    """A second user, connected before the flood starts."""
    async with ws_client(gateway.ws_url, token("bob")) as client:
        assert (await client.recv())["type"] == "session.created"
        yield client


async def assert_still_served(client: Client) -> None:
    await client.send(type="ping")
    assert (await client.recv())["type"] == "pong"
    await client.send(type="input_text", text="How do I warm up?", turn_id="after-flood")
    events = await client.until("response.completed", "response.failed", "error")
    assert events[-1]["type"] == "response.completed"


async def test_a_metrics_flood_is_closed_1008_and_another_user_keeps_working(
    gateway: RunningGateway, token: Token, other_user: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="coach.realtime")
    async with ws_client(gateway.ws_url, token("mallory")) as flooder:
        await flooder.recv()
        message = await assert_closed_for_flooding(
            flooder, lambda: flooder.conn.send(METRICS), "frames"
        )
    assert "100 frames per second" in message
    await assert_still_served(other_user)
    lines = [r for r in caplog.records if r.getMessage() == "inbound bound exceeded"]
    assert len(lines) == 1
    assert lines[0].__dict__["bound"] == "frames"


async def test_a_client_over_the_byte_bound_is_closed_1008(
    fast_sim: Any, tmp_path: Path, token: Token
) -> None:
    settings = make_settings(fast_sim.url, tmp_path, inbound_bytes_per_s=100_000)
    async with running_gateway(settings) as gw, ws_client(gw.ws_url, token()) as client:
        await client.recv()
        frame = bytes(64 * 1024)  # pcm16 silence
        message = await assert_closed_for_flooding(client, lambda: client.conn.send(frame), "bytes")
    assert "100000 bytes per second" in message


async def test_a_flood_of_protocol_pings_is_closed_1008(
    gateway: RunningGateway, token: Token, other_user: Client
) -> None:
    """Pings answered by the protocol itself, never seen by the app, still count."""
    async with ws_client(gateway.ws_url, token("mallory")) as flooder:
        await flooder.recv()
        await assert_closed_for_flooding(flooder, flooder.conn.ping, "frames")
    await assert_still_served(other_user)


async def test_a_flood_of_continuation_frames_is_closed_1008(
    gateway: RunningGateway, token: Token
) -> None:
    """One message in a thousand one-byte fragments is a thousand frames."""
    async with ws_client(gateway.ws_url, token("mallory")) as flooder:
        await flooder.recv()
        fragments = [b"x"] * 1_000
        await assert_closed_for_flooding(flooder, lambda: flooder.conn.send(fragments), "frames")


async def test_a_voice_client_streaming_in_real_time_is_not_closed(
    gateway: RunningGateway, token: Token
) -> None:
    """pcm16 at 32 KB/s in 20 ms frames (the most frames a voice client sends), for longer
    than the burst lasts, with an app `ping` each second, under the default bounds."""
    frame = 640  # 20 ms of 16 kHz mono pcm16
    audio = speak(SENTENCES[0])
    audio += silence(max(0.0, 5.0 - len(audio) / 32_000))
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        start = time.monotonic()
        for n, i in enumerate(range(0, len(audio), frame)):
            await client.conn.send(audio[i : i + frame])
            if n % 50 == 49:
                await client.send(type="ping")
                assert (await client.recv())["type"] == "pong"
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
        await client.send(type="input_audio.commit", turn_id="spoken")
        events = await client.until("response.completed", "response.failed", "error")
        assert events[-1]["type"] == "response.completed", events[-1]
        assert any(e["type"] == "transcript" and e["text"].strip() for e in events)
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"


async def test_a_refused_handshake_is_answered_without_a_traceback(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A WebSocket upgrade that `websockets` refuses (no key) gets its 400; the gateway's
    protocol does not go on to offer extensions to an app that never runs."""
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
