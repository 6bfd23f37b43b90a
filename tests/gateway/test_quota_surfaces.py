"""Per-user quotas as each channel shows them: 429 + Retry-After over HTTP, `rate_limited`
in-band over the WebSocket (connection kept), close 4429 past the connection cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.server import RunningGateway, running_gateway
from gateway.settings import QuotaSettings
from tests.conftest import make_settings
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]


@pytest.fixture
async def tight(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    quotas = QuotaSettings(turns_per_minute=1, connections=1, concurrent_streams=1)
    async with running_gateway(make_settings(fast_sim.url, tmp_path, quotas=quotas)) as running:
        yield running


async def test_sse_over_quota_is_429_with_retry_after(tight: RunningGateway, token: Token) -> None:
    headers = {"Authorization": f"Bearer {token('quinn')}"}
    async with httpx.AsyncClient(base_url=tight.url, headers=headers) as http:
        first = await http.post("/v1/chat", json={"message": "one"})
        assert first.status_code == 200
        second = await http.post("/v1/chat", json={"message": "two"})
    assert second.status_code == 429
    assert second.json()["error"] == {**second.json()["error"], "code": "rate_limited"}
    assert int(second.headers["retry-after"]) >= 1


async def test_openai_sdk_sees_rate_limit_error(tight: RunningGateway, token: Token) -> None:
    client = openai.AsyncOpenAI(base_url=f"{tight.url}/v1", api_key=token("rita"), max_retries=0)
    async with client:
        await client.chat.completions.create(
            model="coach", messages=[{"role": "user", "content": "a"}]
        )
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model="coach", messages=[{"role": "user", "content": "b"}]
            )


async def test_websocket_rate_limited_in_band_and_connection_cap(
    tight: RunningGateway, token: Token
) -> None:
    async with ws_client(tight.ws_url, token("sam")) as client:
        await client.recv()
        await client.send(type="input_text", text="one")
        assert (await client.until("response.completed"))[-1]["type"] == "response.completed"
        await client.send(type="input_text", text="two")
        limited = (await client.until("rate_limited"))[-1]
        assert limited["scope"] == "turns_per_minute" and limited["retry_after_ms"] > 0
        await client.send(type="ping")
        assert (await client.until("pong"))[-1]["type"] == "pong"  # the connection is kept
        async with ws_client(tight.ws_url, token("sam")) as second:
            with pytest.raises(ConnectionClosed) as info:
                await second.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4429


async def test_turns_past_the_process_cap_are_shed(
    fast_sim: Any, tmp_path: Path, token: Token
) -> None:
    await fast_sim.set_knobs(tokens_per_s=20, reply_tokens=60)
    settings = make_settings(fast_sim.url, tmp_path, max_running_turns=1)
    async with (
        running_gateway(settings) as gw,
        ws_client(gw.ws_url, token("first")) as busy,
        ws_client(gw.ws_url, token("second")) as late,
    ):
        await busy.recv()
        await late.recv()
        await busy.send(type="input_text", text="a long answer please")
        await busy.until("response.delta")
        await late.send(type="input_text", text="me too")
        shed = (await late.until("error"))[-1]
        assert shed["code"] == "server_busy" and shed["retryable"] is True
        async with httpx.AsyncClient(base_url=gw.url) as http:
            response = await http.post(
                "/v1/chat",
                json={"message": "and me"},
                headers={"Authorization": f"Bearer {token('third')}"},
            )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "server_busy"
        assert response.headers["retry-after"] == "1"
        assert (await busy.until("response.completed"))[-1]["finish_reason"] == "stop"
