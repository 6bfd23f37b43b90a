"""The whole gateway on a real Postgres: turns over the WebSocket are stored, assessed by the
in-process pipeline through the simulated upstream, and pushed back as `assessment.created`."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from gateway.server import RunningGateway
from tests.gateway.wsclient import ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]

TURNS = (
    "I practised my opening line for the pitch five times and rushed it every time.",
    "My voice drops at the end of each sentence and people stop listening.",
    "I tried pausing before the key number, and it felt much calmer.",
    "Next I want to work on the filler words when I lose my place.",
)


async def test_turns_are_stored_assessed_and_pushed(stack: RunningGateway, token: Token) -> None:
    async with ws_client(stack.ws_url, token("frank")) as client:
        session_id = (await client.recv())["session_id"]
        await client.send(type="session.update", session={"focus_ids": ["pacing", "nonsense"]})
        events = await client.until("error")
        assert events[-1]["code"] == "unknown_focus"
        await client.send(type="session.update", session={"focus_ids": ["pacing"]})
        await client.until("session.updated")
        for text in TURNS:
            await client.send(type="input_text", text=text)
            assert (await client.until("response.completed", "response.failed"))[-1][
                "type"
            ] == "response.completed"
        pushed = (await client.until("assessment.created"))[-1]["assessment"]
    assert pushed["session_id"] == session_id
    assert pushed["kind"] in ("interaction", "multi_turn")
    headers = {"Authorization": f"Bearer {token('frank')}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
        interactions = (await http.get(f"/v1/sessions/{session_id}/interactions")).json()["data"]
        assert {i["user_text"] for i in interactions} == set(TURNS)
        stored = (await http.get(f"/v1/sessions/{session_id}/assessments")).json()["data"]
        assert pushed["id"] in {a["id"] for a in stored}
        other = {"Authorization": f"Bearer {token('mallory')}"}
        hidden = await http.get(f"/v1/sessions/{session_id}/assessments", headers=other)
        assert hidden.status_code == 404
