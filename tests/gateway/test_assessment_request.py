"""`assessment.request` on a real Postgres, through the simulated upstream: a turn the filter
skips is assessed when the client asks, and each refusal is an `error` on a socket kept open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from db.pool import Pool
from gateway.server import RunningGateway
from streams.events import AssessmentRequest, ProtocolError, parse_client_event
from tests.gateway.conftest import pool_of
from tests.gateway.wsclient import Client, ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]


async def _turn(client: Client, text: str, turn_id: str | None = None) -> None:
    extra = {} if turn_id is None else {"turn_id": turn_id}
    await client.send(type="input_text", text=text, **extra)
    assert (await client.until("response.completed", "response.failed"))[-1][
        "type"
    ] == "response.completed"


async def _own_job_scope(pool: Pool, interaction_id: int) -> str:
    """The scope the filter gave the turn's own job, once it is done."""
    query = "SELECT scope FROM assessment_jobs WHERE interaction_id = $1 AND status = 'done'"
    for _ in range(750):
        scope = await pool.fetchval(query, interaction_id)
        if scope is not None:
            return str(scope)
        await asyncio.sleep(0.02)
    raise TimeoutError("the turn's job did not finish")


async def _still_open(client: Client) -> None:
    await client.send(type="ping")
    assert (await client.until("pong"))[-1]["type"] == "pong"


async def test_a_greeting_the_filter_skips_is_assessed_on_request(
    stack: RunningGateway, token: Token
) -> None:
    pool = pool_of(stack)
    async with ws_client(stack.ws_url, token("gina")) as client:
        session_id = (await client.recv())["session_id"]
        await _turn(client, "hi")
        interaction_id = await pool.fetchval(
            "SELECT id FROM interactions WHERE session_id = $1", session_id
        )
        # The turn's own job runs first and the filter skips the greeting.
        assert await _own_job_scope(pool, interaction_id) == "none"
        await client.send(type="assessment.request")
        async with asyncio.timeout(15):
            pushed = (await client.until("assessment.created", "error"))[-1]
        assert pushed["type"] == "assessment.created", pushed
    assessment = pushed["assessment"]
    assert assessment["session_id"] == session_id
    assert assessment["kind"] == "interaction"
    assert assessment["interaction_ids"] == [str(interaction_id)]


async def test_a_named_turn_is_assessed_and_an_unknown_one_refused(
    stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("gina2")) as client:
        session_id = (await client.recv())["session_id"]
        await _turn(client, "hello", turn_id="t-first")
        await _turn(client, "thanks")
        await client.send(type="assessment.request", turn_id="t-nope")
        error = (await client.until("error"))[-1]
        assert error["code"] == "unknown_turn"
        await _still_open(client)
        await client.send(type="assessment.request", turn_id="t-first")
        async with asyncio.timeout(15):
            pushed = (await client.until("assessment.created"))[-1]["assessment"]
    first = await pool_of(stack).fetchval(
        "SELECT id FROM interactions WHERE session_id = $1 AND turn_id = 't-first'", session_id
    )
    assert pushed["interaction_ids"] == [str(first)]


async def test_no_turn_yet_is_refused(stack: RunningGateway, token: Token) -> None:
    async with ws_client(stack.ws_url, token("gina3")) as client:
        await client.recv()
        await client.send(type="assessment.request")
        error = (await client.until("error"))[-1]
        assert error["code"] == "no_turn_to_assess"
        assert error["retryable"] is False
        await _still_open(client)


async def test_a_session_summary_on_request_keeps_the_session_open(
    stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("gina4")) as client:
        session_id = (await client.recv())["session_id"]
        await _turn(client, "ok")
        await client.send(type="assessment.request", scope="session")
        pushed = (await client.until("assessment.created"))[-1]["assessment"]
        assert pushed["kind"] == "session_summary"
        await _still_open(client)
    closed = await pool_of(stack).fetchval(
        "SELECT closed_at FROM sessions WHERE id = $1", session_id
    )
    assert closed is None


async def test_without_a_database_the_request_is_refused(
    gateway: RunningGateway, token: Token
) -> None:
    async with ws_client(gateway.ws_url, token()) as client:
        await client.recv()
        await _turn(client, "hi")
        await client.send(type="assessment.request")
        error = (await client.until("error"))[-1]
        assert error["code"] == "persistence_unavailable"
        await _still_open(client)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type": "assessment.request"}', AssessmentRequest("recent")),
        ('{"type": "assessment.request", "scope": null}', AssessmentRequest("recent")),
        ('{"type": "assessment.request", "turn_id": "t1"}', AssessmentRequest("recent", "t1")),
        ('{"type": "assessment.request", "scope": "session"}', AssessmentRequest("session")),
    ],
)
def test_parse(frame: str, expected: AssessmentRequest) -> None:
    assert parse_client_event(frame) == expected


@pytest.mark.parametrize(
    ("frame", "code", "names"),
    [
        ('{"type": "assessment.request", "scope": "week"}', "invalid_scope", "scope"),
        ('{"type": "assessment.request", "scope": 3}', "invalid_scope", "scope"),
        ('{"type": "assessment.request", "turn_id": 5}', "invalid_turn_id", "turn_id"),
        ('{"type": "assessment.request", "turn_id": ""}', "invalid_turn_id", "turn_id"),
        (
            '{"type": "assessment.request", "scope": "session", "turn_id": "t1"}',
            "invalid_turn_id",
            "turn_id",
        ),
    ],
)
def test_parse_errors_name_the_field(frame: str, code: str, names: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(frame)
    assert info.value.code == code
    assert names in info.value.message
