"""`POST /v1/chat` as server-sent events, read with httpx-sse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from gateway.http_protocol import _ChunkWriter
from gateway.server import RunningGateway

Token = Callable[..., str]


async def _events(
    gateway: RunningGateway, token: str, body: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
        aconnect_sse(http, "POST", "/v1/chat", json=body, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        return [(sse.event, sse.id, orjson.loads(sse.data)) async for sse in source.aiter_sse()]


async def test_sse_turn(gateway: RunningGateway, token: Token) -> None:
    events = await _events(gateway, token(), {"message": "How should I warm up?"})
    names = [name for name, _, _ in events]
    assert names[0] == "session.created"
    assert names[1] == "response.started"
    assert names[-1] == "response.completed"
    assert [int(i) for _, i, _ in events] == list(range(1, len(events) + 1))
    deltas = "".join(d["text"] for n, _, d in events if n == "response.delta")
    assert events[-1][2]["text"] == deltas
    session_id = events[0][2]["session_id"]
    again = await _events(gateway, token(), {"message": "And after?", "session_id": session_id})
    assert again[0][2]["session_id"] == session_id


async def test_the_turn_is_written_with_send_now(
    gateway: RunningGateway, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extension reaches the endpoint through Starlette and the middleware (were it lost,
    the events would still flow, slower, through the ASGI send)."""
    written: list[bytes] = []
    write = _ChunkWriter.__call__

    def watched(self: _ChunkWriter, body: bytes) -> bool:
        if ok := write(self, body):
            written.append(body)
        return ok

    monkeypatch.setattr(_ChunkWriter, "__call__", watched)
    events = await _events(gateway, token(), {"message": "How should I warm up?"})
    deltas = [name for name, _, _ in events if name == "response.delta"]
    assert deltas and sum(b"event: response.delta" in w for w in written) == len(deltas)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": ""}, 400, "empty_text"),
        ({"message": 5}, 400, "invalid_request"),
        ({"message": "hi", "session_id": "nope"}, 404, "session_not_found"),
    ],
)
async def test_sse_bad_input(
    gateway: RunningGateway, token: Token, body: dict[str, Any], status: int, code: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post(
            "/v1/chat", json=body, headers={"Authorization": f"Bearer {token()}"}
        )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_sse_needs_auth_and_json(gateway: RunningGateway, token: Token) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        anon = await http.post("/v1/chat", json={"message": "hi"})
        assert anon.status_code == 401
        assert anon.json()["error"]["code"] == "unauthenticated"
        bad = await http.post(
            "/v1/chat", content=b"{nope", headers={"Authorization": f"Bearer {token()}"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


async def test_health(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_sse_spoken_reply(gateway: RunningGateway, token: Token) -> None:
    events = await _events(gateway, token(), {"message": "One tip, spoken", "voice": True})
    audio = [d for n, _, d in events if n == "response.audio"]
    assert audio and [a["seq"] for a in audio] == list(range(len(audio)))
    assert events[-1][0] == "response.completed"
    assert events[-1][2]["timings"]["first_audio_ms"] > 0


async def test_sse_voice_must_be_a_boolean(gateway: RunningGateway, token: Token) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post(
            "/v1/chat",
            json={"message": "hi", "voice": "yes"},
            headers={"Authorization": f"Bearer {token()}"},
        )
    assert response.status_code == 400
