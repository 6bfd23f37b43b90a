"""The fence around uvicorn's internals: the installed uvicorn has everything the gateway's
protocols use; outside the tested versions, or with a method gone, the gateway runs on uvicorn's
own protocols (the plain ASGI path) with a warning, and still serves turns over SSE and the
WebSocket."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway import uvicorn_fence
from gateway.app import create_app
from gateway.http_protocol import CoachHttpProtocol
from gateway.server import GatewayServer, serving, uvicorn_config
from gateway.uvicorn_fence import fenced_protocols, missing_internals
from gateway.ws_protocol import CoachWebSocketProtocol
from tests.conftest import make_settings
from tests.gateway.wsclient import ws_client

WANTED = (CoachHttpProtocol, CoachWebSocketProtocol)


def test_the_installed_uvicorn_has_what_the_protocols_use() -> None:
    assert missing_internals() == []
    assert fenced_protocols(WANTED) == WANTED


def test_a_version_outside_the_tested_range_is_named() -> None:
    assert missing_internals(version="0.56.0") == ["uvicorn 0.56.0 (tested: >=0.55.0,<0.56.0)"]
    assert missing_internals(version="0.54.9")[0].startswith("uvicorn 0.54.9")


def test_a_missing_method_is_named() -> None:
    expected: dict[type, tuple[str, ...]] = {
        HttpToolsProtocol: ("on_headers_complete", "on_headers_done")
    }
    assert missing_internals(expected=expected) == ["HttpToolsProtocol.on_headers_done"]


def test_with_something_missing_uvicorns_own_protocols_are_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="coach.server"):
        assert fenced_protocols(WANTED, ["HttpToolsProtocol.on_headers_done"]) == (
            "httptools",
            "websockets-sansio",
        )
    (record,) = [r for r in caplog.records if r.name == "coach.server"]
    assert "HttpToolsProtocol.on_headers_done" in record.getMessage()


async def test_on_the_fallback_the_gateway_still_serves_turns(
    fast_sim: Any,
    tmp_path: Path,
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the installed uvicorn were newer than the tested range.
    monkeypatch.setattr(uvicorn_fence, "TESTED_UVICORN", ((0, 0, 1), (0, 0, 2)))
    settings = make_settings(fast_sim.url, tmp_path)
    app = create_app(settings)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=0)
    assert (config.http, config.ws) == ("httptools", "websockets-sansio")
    async with serving(GatewayServer(config)) as port:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token()}"}
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            aconnect_sse(http, "POST", "/v1/chat", json={"message": "Hi"}, headers=headers) as sse,
        ):
            events = [event.event async for event in sse.aiter_sse()]
        assert events[-1] == "response.completed"
        async with ws_client(f"ws://127.0.0.1:{port}", token()) as client:
            await client.recv()
            await client.send(type="input_text", text="And on the socket?")
            done = (await client.until("response.completed", "response.failed"))[-1]
        assert done["type"] == "response.completed" and done["text"]
