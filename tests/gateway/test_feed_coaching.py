"""Live coaching on a session's feed (`GET /v1/sessions/{id}/events`): each tip appears once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from gateway.server import RunningGateway
from tests.conftest import make_settings
from tests.gateway.observed import observed_gateway
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]


@pytest.fixture
async def gw(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with observed_gateway(make_settings(fast_sim.url, tmp_path)) as running:
        yield running


async def test_each_tip_is_on_the_feed_once(gw: RunningGateway, token: Token) -> None:
    headers = {"Authorization": f"Bearer {token('alice')}"}
    async with ws_client(gw.ws_url, token("alice")) as client:
        session_id = (await client.recv())["session_id"]
        await client.send(type="metrics.push", metrics={"pitch_accuracy": 0.3, "tempo": 0.8})
        tips = await client.until("coaching.feedback")
        # A last push after the tip marks the end of what to read back.
        async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=10) as http:
            marker = {"metrics": {"marker": 1.0}}
            pushed = await http.post(f"/v1/sessions/{session_id}/metrics", json=marker)
            assert pushed.status_code == 202
            feed: list[tuple[str, dict[str, Any]]] = []
            async with aconnect_sse(
                http,
                "GET",
                f"/v1/sessions/{session_id}/events",
                headers={"Last-Event-ID": "0"},
            ) as source:
                async for sse in source.aiter_sse():
                    feed.append((sse.event, orjson.loads(sse.data)))
                    if sse.event == "metrics" and "marker" in feed[-1][1]["metrics"]:
                        break
        await client.send(type="ping")
        rest = await client.until("pong")
    on_socket = [e for e in tips + rest if e["type"] == "coaching.feedback"]
    on_feed = [data for name, data in feed if name == "coaching.feedback"]
    assert len(on_socket) == 1
    assert len(on_feed) == 1
    assert on_feed[0]["text"] == on_socket[0]["text"]
