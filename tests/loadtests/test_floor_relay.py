"""The floor relay (`loadtests.micro.floor_relay`) against the sim, driven as the bench client
drives the gateway: what it relays must be the sim's reply, whole and in order, whether it reads
the upstream by hand or with the gateway's chat client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from loadtests.micro.floor_relay import MAX_FRAME_BYTES, Client, serving, ws_frame
from providers.sim import SimKnobs, running_sim

CLIENTS = pytest.mark.parametrize("client", ["hand", "native"])


@contextlib.asynccontextmanager
async def relay(client: Client = "hand", **knobs: Any) -> AsyncIterator[str]:
    knobs = {"ttft_ms": 5, "tokens_per_s": 2000, "reply_tokens": 12, **knobs}
    async with (
        running_sim(SimKnobs(**knobs)) as sim,
        serving("127.0.0.1", 0, sim.url, client=client) as server,
    ):
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/realtime"


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    async with relay() as url:
        yield url


async def _reply(ws: aiohttp.ClientWebSocketResponse, turn_id: str) -> list[dict[str, Any]]:
    await ws.send_str(
        orjson.dumps({"type": "input_text", "text": "Hi", "turn_id": turn_id}).decode()
    )
    events = []
    while True:
        event = orjson.loads((await ws.receive(timeout=10)).data)
        events.append(event)
        if event["type"] in ("response.completed", "response.failed"):
            return events


@CLIENTS
async def test_turns_relay_the_upstreams_reply_whole_over_one_connection(client: Client) -> None:
    async with relay(client) as url, aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        created = orjson.loads((await ws.receive(timeout=10)).data)
        assert created["type"] == "session.created"
        for turn in ("t1", "t2", "t3"):  # the keep-alive upstream connection is reused
            events = await _reply(ws, turn)
            kinds = [e["type"] for e in events]
            assert kinds[0] == "response.started" and kinds[-1] == "response.completed"
            deltas = [e["text"] for e in events if e["type"] == "response.delta"]
            assert len(deltas) >= 12
            completed = events[-1]
            assert completed["turn_id"] == turn and completed["text"] == "".join(deltas)
            timings = completed["timings"]
            assert timings["ttft_ms"] >= timings["upstream_ttft_ms"] > 0


async def test_a_ping_gets_its_pong(relay_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_url, autoping=False) as ws:
        await ws.receive(timeout=10)  # session.created
        await ws.ping(b"floor")
        pong = await ws.receive(timeout=10)
        assert pong.type is aiohttp.WSMsgType.PONG and pong.data == b"floor"


def test_frames_carry_their_length_in_the_smallest_form() -> None:
    assert ws_frame(b"x" * 125)[:2] == bytes((0x81, 125))
    assert ws_frame(b"x" * 126)[:4] == bytes((0x81, 126, 0, 126))
    assert ws_frame(b"x" * 70_000)[:2] == bytes((0x81, 127))
    assert len(ws_frame(b"x" * 70_000)) == 70_000 + 10


@CLIENTS
@pytest.mark.parametrize(
    "knobs",
    [{"fail_rate": 1.0, "fail_status": 503}, {"drop_after": 3}, {"malformed_rate": 1.0}],
)
async def test_an_upstream_failure_ends_the_turn_with_response_failed(
    client: Client, knobs: dict[str, Any]
) -> None:
    async with (
        relay(client, **knobs) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        await ws.receive(timeout=10)  # session.created
        for turn in ("t1", "t2"):  # and the next turn finds a new upstream connection
            events = await _reply(ws, turn)
            assert events[-1]["type"] == "response.failed"
            assert events[-1]["error"]["code"] == "upstream_error"


async def test_a_frame_over_the_limit_closes_the_socket_with_1009(relay_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_url) as ws:
        await ws.receive(timeout=10)  # session.created
        await ws.send_str("x" * (MAX_FRAME_BYTES + 1))
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1009


@CLIENTS
async def test_a_turn_sent_while_one_runs_is_refused_and_the_running_one_ends_whole(
    client: Client,
) -> None:
    async with (
        relay(client, tokens_per_s=200) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        await ws.receive(timeout=10)  # session.created
        for turn in ("t1", "t2"):
            text = orjson.dumps({"type": "input_text", "text": "Hi", "turn_id": turn}).decode()
            await ws.send_str(text)
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] != "response.completed":
            events.append(orjson.loads((await ws.receive(timeout=10)).data))
        assert [e["code"] for e in events if e["type"] == "error"] == ["turn_running"]
        assert {e["turn_id"] for e in events if e["type"] != "error"} == {"t1"}
        deltas = [e["text"] for e in events if e["type"] == "response.delta"]
        assert events[-1]["text"] == "".join(deltas) and len(deltas) >= 12
