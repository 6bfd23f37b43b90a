"""What clients send is checked at the edge, on the whole gateway over a real Postgres: text
Postgres cannot store (NUL) is refused with a clear error before a turn starts, ids in paths are
checked before a query sees them, and refused focus ids never reach the prompt."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from db.focuses import list_focuses
from db.pool import open_pool
from gateway.server import RunningGateway
from streams.prompts import FOCUS_IDS
from tests.gateway.wsclient import ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]


def _http(stack: RunningGateway, token: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=10)


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert error["retryable"] is False


async def test_nul_in_a_json_body_is_refused_before_the_turn(
    stack: RunningGateway, token: Token
) -> None:
    async with _http(stack, token("nora")) as http:
        chat = await http.post("/v1/chat", json={"message": "my breath\u0000 runs out"})
        nested = await http.post(
            "/v1/chat/completions",
            json={"model": "coach", "messages": [{"role": "user", "content": "hi\u0000"}]},
        )
        key = await http.post("/v1/chat", json={"message": "hello", "\u0000": 1})
        _assert_error(chat, 400, "invalid_text")
        _assert_error(nested, 400, "invalid_text")
        _assert_error(key, 400, "invalid_text")
        assert "NUL" in chat.json()["error"]["message"]
        # Nothing was started, so nothing was stored (or dropped).
        assert (await http.get("/v1/sessions")).json()["data"] == []


async def test_nul_in_a_path_id_is_a_json_404(stack: RunningGateway, token: Token) -> None:
    async with _http(stack, token("nora")) as http:
        for path in (
            "/v1/sessions/%00",
            "/v1/sessions/ab%00cd/interactions",
            "/v1/sessions/%00/assessments",
            "/v1/sessions/%00/events",
            "/v1/sessions/" + "a" * 300,
        ):
            _assert_error(await http.get(path), 404, "session_not_found")
        pushed = await http.post("/v1/sessions/%00/metrics", json={"metrics": {"tempo": 0.5}})
        _assert_error(pushed, 404, "session_not_found")
        cursor = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|\x00").decode()
        _assert_error(await http.get(f"/v1/sessions?before={cursor}"), 400, "invalid_cursor")


async def test_nul_in_the_session_id_of_a_socket_is_an_unknown_session(
    stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("nora"), query="?session_id=%00") as client:
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == "session_not_found"
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_refused_focus_ids_never_reach_the_prompt(
    stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("otto")) as client:
        await client.recv()
        huge = [c * 18_000 for c in "abc"]
        await client.send(type="session.update", session={"focus_ids": huge})
        events = await client.until("error")
        assert events[-1]["code"] == "unknown_focus"
        assert all(e["type"] != "session.updated" for e in events)
        await client.send(type="input_text", text="How do I pace my opening line?")
        done = (await client.until("response.completed", "response.failed"))[-1]
        assert done["type"] == "response.completed"
        # Without the refused ids the prompt is a few dozen tokens; with them, thousands.
        assert done["usage"]["input_tokens"] < 200
        await client.send(type="session.update", session={"focus_ids": ["pacing", "clarity"]})
        updated = (await client.until("session.updated"))[-1]
        assert updated["session"]["focus_ids"] == ["pacing", "clarity"]


async def test_the_catalog_without_a_database_is_the_seeded_one(
    stack: RunningGateway, database_dsn: str
) -> None:
    pool = await open_pool(database_dsn, max_size=1)
    try:
        assert {focus.id for focus in await list_focuses(pool)} == FOCUS_IDS
    finally:
        await pool.close()
