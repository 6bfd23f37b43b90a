"""`session.update` over a real uvicorn and the simulated upstream: the whole update is checked
before anything changes, and what one connection sets stays with that connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from gateway.server import RunningGateway
from tests.gateway.wsclient import Client, ws_client

Token = Callable[..., str]

BACKUP_MODEL = "claude-haiku-4-5"  # the `chat` route's second target in the sim's default routes


async def _settings(client: Client) -> dict[str, Any]:
    """The connection's settings as they are now (an empty update changes nothing)."""
    await client.send(type="session.update", session={})
    events = await client.until("session.updated", "error")
    assert events[-1]["type"] == "session.updated", events[-1]
    session: dict[str, Any] = events[-1]["session"]
    return session


async def _error(client: Client, **session: Any) -> dict[str, Any]:
    await client.send(type="session.update", session=session)
    event = (await client.until("session.updated", "error"))[-1]
    assert event["type"] == "error", event
    return event


async def _turn(client: Client, text: str = "How do I pace my opening line?") -> list[Any]:
    await client.send(type="input_text", text=text)
    events = await client.until("response.completed", "response.failed", "error")
    assert events[-1]["type"] == "response.completed", events[-1]
    return events


async def test_unknown_model_is_refused_and_turns_keep_working(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token("uma")) as client:
        await client.recv()
        error = await _error(client, model="gpt-5-ultra")
        assert error["code"] == "unknown_model"
        assert "model" in error["message"]
        assert (await _settings(client))["model"] is None
        started = (await _turn(client))[0]
        assert started["type"] == "response.started" and started["provider"] == "primary"


async def test_the_listed_gateway_model_means_the_routes_default(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token("cole")) as client:
        await client.recv()
        await client.send(type="session.update", session={"model": BACKUP_MODEL})
        assert (await client.until("session.updated"))[-1]["session"]["model"] == BACKUP_MODEL
        await client.send(type="session.update", session={"model": "coach"})
        assert (await client.until("session.updated"))[-1]["session"]["model"] is None
        assert (await _turn(client))[0]["provider"] == "primary"


@pytest.mark.parametrize(
    ("session", "code", "field"),
    [
        ({"coach": "presentation", "model": "gpt-5-ultra"}, "unknown_model", "model"),
        ({"coach": "pirate", "model": BACKUP_MODEL}, "unknown_coach", "coach"),
        ({"focus_ids": ["pacing", "juggling"], "coach": "language"}, "unknown_focus", "focus_ids"),
        ({"coach": 5}, "invalid_session", "coach"),
        ({"model": ["gpt-4o-mini"]}, "invalid_session", "model"),
        ({"focus_ids": "pacing"}, "invalid_session", "focus_ids"),
        ({"focus_ids": ["pacing", "pacing"]}, "invalid_session", "focus_ids"),
        ({"focus_ids": None}, "invalid_session", "focus_ids"),
        ({"input_audio_format": None}, "invalid_session", "input_audio_format"),
        ({"voice": {"output": True, "voice": {"name": "x"}}}, "invalid_session", "voice"),
    ],
)
async def test_a_bad_field_changes_nothing(
    gateway: RunningGateway, token: Token, session: dict[str, Any], code: str, field: str
) -> None:
    async with ws_client(gateway.ws_url, token("vera")) as client:
        await client.recv()
        await client.send(
            type="session.update", session={"coach": "voice", "focus_ids": ["pacing"]}
        )
        before = (await client.until("session.updated"))[-1]["session"]
        error = await _error(client, **session)
        assert error["code"] == code
        assert field in error["message"]
        assert await _settings(client) == before
        await client.send(type="ping")
        assert (await client.recv())["type"] == "pong"


async def test_settings_stay_with_the_connection_that_set_them(
    gateway: RunningGateway, token: Token
) -> None:
    """A phone and a dashboard on one session, and a `POST /v1/chat` on it: a model one socket
    picks serves that socket alone, also after it has gone."""
    async with ws_client(gateway.ws_url, token("nina")) as phone:
        session_id = (await phone.recv())["session_id"]
        await phone.send(type="session.update", session={"model": BACKUP_MODEL, "coach": "voice"})
        await phone.until("session.updated")
        assert (await _turn(phone))[0]["provider"] == "backup"
        async with ws_client(gateway.ws_url, token("nina")) as dashboard:
            joined = await dashboard.recv()
            assert joined["session_id"] == session_id  # the same conversation...
            assert (await _settings(dashboard))["model"] is None  # ...not the same settings
            assert (await _turn(dashboard))[0]["provider"] == "primary"
        assert (await _sse_turn(gateway, token("nina"), session_id))["provider"] == "primary"
        assert (await _turn(phone))[0]["provider"] == "backup"
    async with ws_client(gateway.ws_url, token("nina")) as again:
        assert (await again.recv())["session_id"] == session_id
        settings = await _settings(again)
        assert settings["model"] is None and settings["coach"] == "default"
        assert (await _turn(again))[0]["provider"] == "primary"


async def _sse_turn(gateway: RunningGateway, token: str, session_id: str) -> dict[str, Any]:
    """`POST /v1/chat` on the session; its `response.started`."""
    body = {"message": "One more tip, please", "session_id": session_id}
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
        aconnect_sse(http, "POST", "/v1/chat", json=body, headers=headers) as source,
    ):
        events = [orjson.loads(sse.data) async for sse in source.aiter_sse()]
    assert events[-1]["type"] == "response.completed", events[-1]
    started: dict[str, Any] = next(e for e in events if e["type"] == "response.started")
    return started


async def test_refused_focus_ids_never_reach_the_prompt(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token("otto")) as client:
        await client.recv()
        huge = [c * 18_000 for c in "abc"]
        error = await _error(client, focus_ids=huge)
        assert error["code"] == "unknown_focus"
        assert len(error["message"]) < 1000  # the values are not echoed in full
        assert (await _settings(client))["focus_ids"] == []
        done = (await _turn(client))[-1]
    # Without the refused ids the prompt is a few dozen tokens; with them it was thousands.
    assert done["usage"]["input_tokens"] < 200


async def test_nul_in_a_frame_is_refused_and_the_connection_stays(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token("ned")) as client:
        await client.recv()
        await client.send(type="input_text", text="my pitch\u0000 drifts")
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == "invalid_text"
        assert error["retryable"] is False
        await client.send(type="session.update", session={"coach": "voice\u0000"})
        assert (await client.recv())["code"] == "invalid_text"
        assert (await _settings(client))["coach"] == "default"
        # Text that spells the escape out (a backslash, then u0000) is ordinary text.
        await _turn(client, "What does \\u0000 mean in my tuner's log?")
