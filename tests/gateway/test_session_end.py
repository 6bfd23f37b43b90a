"""`session.end` on a real Postgres: the session is closed and its summary queued, every socket
on it gets `session.ended` and stays open, the close hooks run, and the next turn opens a new
session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.runtime import Gateway
from gateway.server import RunningGateway
from streams.events import ProtocolError, SessionEnd, parse_client_event
from tests.gateway.wsclient import Client, ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]


def _gateway(stack: RunningGateway) -> Gateway:
    gateway: Gateway = stack.app.state.gateway
    return gateway


async def _turn(client: Client, text: str) -> None:
    await client.send(type="input_text", text=text)
    assert (await client.until("response.completed", "response.failed"))[-1][
        "type"
    ] == "response.completed"


async def test_session_end_closes_summarises_and_the_next_turn_opens_a_new_session(
    stack: RunningGateway, token: Token
) -> None:
    gateway = _gateway(stack)
    closed: list[tuple[str, str]] = []
    hooked = asyncio.Event()

    async def hook(user_id: str, session_id: str) -> None:
        closed.append((user_id, session_id))
        hooked.set()

    gateway.on_session_closed.append(hook)
    async with ws_client(stack.ws_url, token("hank")) as client:
        session_id = (await client.recv())["session_id"]
        await _turn(client, "I practised scales for twenty minutes and my left hand lagged.")
        await client.send(type="session.end")
        ended = (await client.until("session.ended"))[-1]
        assert ended == {"type": "session.ended", "session_id": session_id}
        await client.send(type="ping")
        await client.until("pong")  # the connection is kept
        await client.send(type="session.end")  # again: nothing more to close
        assert (await client.until("session.ended"))[-1] == ended
        # The next turn opens a new session on the same connection, announced first.
        await client.send(type="input_text", text="Now the right hand.")
        created = (await client.until("session.created"))[-1]
        assert created["session_id"] != session_id
        assert created["resumed"] is False
        completed = (await client.until("response.completed"))[-1]
        assert completed["stored"] == "db"
    async with asyncio.timeout(10):
        await hooked.wait()
    assert closed == [("hank", session_id)]
    assert gateway.persistence is not None
    pool = gateway.persistence.pool
    assert await pool.fetchval("SELECT closed_at FROM sessions WHERE id = $1", session_id)
    kinds = await pool.fetch(
        "SELECT kind, scope FROM assessment_jobs WHERE session_id = $1 AND kind = $2",
        session_id,
        "session_summary",
    )
    assert [(r["kind"], r["scope"]) for r in kinds] == [("session_summary", "session_summary")]
    new_session = await pool.fetchval(
        "SELECT session_id FROM interactions WHERE user_text = 'Now the right hand.'"
    )
    assert new_session == created["session_id"]
    assert await pool.fetchval("SELECT closed_at FROM sessions WHERE id = $1", new_session) is None


async def test_every_socket_on_the_session_is_told_and_moves_on_together(
    stack: RunningGateway, token: Token
) -> None:
    async with (
        ws_client(stack.ws_url, token("ivy")) as first,
        ws_client(stack.ws_url, token("ivy")) as second,
    ):
        session_id = (await first.recv())["session_id"]
        assert (await second.recv())["session_id"] == session_id  # the same conversation
        await first.send(type="session.end")
        assert (await first.until("session.ended"))[-1]["session_id"] == session_id
        assert (await second.until("session.ended"))[-1]["session_id"] == session_id
        await first.send(type="input_text", text="hello again")
        new_session = (await first.until("session.created"))[-1]["session_id"]
        await first.until("response.completed")
        await second.send(type="input_text", text="and from here")
        joined = (await second.until("session.created"))[-1]
        assert joined["session_id"] == new_session  # the open one, not a third
        assert joined["resumed"] is True
        await second.until("response.completed")


async def test_a_reply_still_streaming_is_not_cut_short(
    stack: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(tokens_per_s=20)
    async with ws_client(stack.ws_url, token("jay")) as client:
        await client.recv()
        await client.send(type="input_text", text="How should I warm up before a long set?")
        await client.until("response.delta")
        await client.send(type="session.end")
        error = (await client.until("error"))[-1]
        assert error["code"] == "turn_in_progress"
        assert error["retryable"] is True
        await client.send(type="response.cancel")
        assert (await client.until("response.completed"))[-1]["finish_reason"] == "cancelled"
        await fast_sim.set_knobs(tokens_per_s=0)  # the summary's model call: no pacing
        await client.send(type="session.end")
        assert (await client.until("session.ended"))[-1]["type"] == "session.ended"


async def test_without_a_database_session_end_is_refused(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await client.send(type="session.end")
        error = (await client.until("error"))[-1]
        assert error["code"] == "persistence_unavailable"
        await client.send(type="ping")
        assert (await client.until("pong"))[-1]["type"] == "pong"


def test_parse() -> None:
    assert parse_client_event('{"type": "session.end"}') == SessionEnd()
    with pytest.raises(ProtocolError) as info:
        parse_client_event('{"type": "session.ends"}')
    assert info.value.code == "unknown_type"


async def test_an_ended_session_gets_its_recap_insight(stack: RunningGateway, token: Token) -> None:
    async with ws_client(stack.ws_url, token("rita-recap")) as client:
        await client.recv()
        await _turn(client, "I ran my talk twice and rushed the ending both times.")
        await client.send(type="session.end")
        events = await asyncio.wait_for(client.until("insight.created"), 20)
    assert "session.ended" in [e["type"] for e in events]
    insight = events[-1]["insight"]
    assert insight["type"] == "session_recap" and insight["text"]
    assert insight["source"] in ("model", "fallback")


async def test_a_drain_lets_a_close_hook_finish(stack: RunningGateway, token: Token) -> None:
    """A recap started by `session.end` just before a shutdown is not cut off by the drain."""
    gateway = _gateway(stack)
    finished: list[str] = []
    started = asyncio.Event()

    async def slow_hook(user_id: str, session_id: str) -> None:
        started.set()
        await asyncio.sleep(0.5)  # a model call
        finished.append(session_id)

    gateway.on_session_closed.append(slow_hook)
    async with ws_client(stack.ws_url, token("jay")) as client:
        session_id = (await client.recv())["session_id"]
        await client.send(type="session.end")
        await client.until("session.ended")
        await started.wait()
        await gateway.drain(grace_s=5.0)
    assert finished == [session_id]
