"""What a client was told is kept (DESIGN.md, "Durability"), on a real Postgres: every channel
stores its turn before `response.completed`, whether or not the client is still there; a
Postgres killed mid-traffic loses no completed turn (they wait in the spool); a failed turn
costs no quota."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.server import RunningGateway, running_gateway
from gateway.settings import QuotaSettings
from tests.conftest import eventually, make_settings
from tests.gateway.wsclient import ws_client
from tests.killable_pg import KillablePostgres
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]


@pytest.fixture
async def product(
    fast_sim: Any, tmp_path: Path, database_dsn: str
) -> AsyncIterator[RunningGateway]:
    """A gateway as users run it: Postgres and assessments on."""
    quotas = QuotaSettings(turns_per_minute=1000)
    settings = make_settings(
        fast_sim.url, tmp_path, persistence=True, database_url=database_dsn, quotas=quotas
    )
    async with running_gateway(settings) as gw:
        yield gw


async def stored_count(dsn: str, column: str, values: list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval(
            f"SELECT count(*) FROM interactions WHERE {column} = ANY($1::text[])", values
        )
        return int(n)
    finally:
        await conn.close()


async def test_a_non_streamed_completion_is_stored_and_charged(
    fast_sim: Any, tmp_path: Path, database_dsn: str, token: Token
) -> None:
    # 500 tokens a day: a streamed call charges its tokens, and so must a non-streamed one.
    quotas = QuotaSettings(turns_per_minute=1000, tokens_per_day=500)
    settings = make_settings(
        fast_sim.url, tmp_path, persistence=True, database_url=database_dsn, quotas=quotas
    )
    async with running_gateway(settings) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=token("nina"), max_retries=0)
        ids: list[str] = []
        with pytest.raises(openai.RateLimitError):
            for _ in range(40):
                reply = await client.chat.completions.create(
                    model="coach", messages=[{"role": "user", "content": "How do I breathe?"}]
                )
                ids.append(reply.id.removeprefix("chatcmpl-"))
                # Stored before the reply left: counted at once, no waiting.
                assert await stored_count(database_dsn, "turn_id", ids) == len(ids)
        await client.close()
    assert 1 <= len(ids) < 40


async def test_an_sse_client_that_leaves_at_the_final_event_loses_nothing(
    product: RunningGateway, database_dsn: str, token: Token
) -> None:
    turn_ids: list[str] = []
    headers = {"Authorization": f"Bearer {token('omar')}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(16):
            async with http.stream(
                "POST", f"{product.url}/v1/chat", json={"message": f"tip {n}"}, headers=headers
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith('data: {"type":"response.started"'):
                        turn_ids.append(line.split('"turn_id":"')[1].split('"')[0])
                    if line == "event: response.completed":
                        break  # close the socket at once
    assert len(turn_ids) == 16
    assert await stored_count(database_dsn, "turn_id", turn_ids) == 16


async def test_response_completed_follows_the_commit_and_says_so(
    product: RunningGateway, database_dsn: str, token: Token
) -> None:
    async with ws_client(product.ws_url, token("pia")) as client:
        await client.recv()
        for n in range(5):
            await client.send(type="input_text", text=f"question {n}", turn_id=f"pia-{n}")
            completed = (await client.until("response.completed"))[-1]
            assert completed["stored"] == "db"
            assert await stored_count(database_dsn, "turn_id", [f"pia-{n}"]) == 1


async def test_a_failed_turn_is_not_charged_to_the_turn_quota(
    fast_sim: Any, tmp_path: Path, database_dsn: str, token: Token
) -> None:
    quotas = QuotaSettings(turns_per_minute=2)
    settings = make_settings(
        fast_sim.url, tmp_path, persistence=True, database_url=database_dsn, quotas=quotas
    )
    async with running_gateway(settings) as gw, ws_client(gw.ws_url, token("quinn")) as client:
        await client.recv()
        await fast_sim.set_knobs(fail_rate=1.0, fail_status=400)  # permanent: no breaker
        for n in range(4):
            await client.send(type="input_text", text=f"try {n}")
            ended = (await client.until("response.failed", "error", "rate_limited"))[-1]
            assert ended["type"] in ("response.failed", "error"), ended
        await fast_sim.set_knobs(fail_rate=0.0)
        for n in range(2):
            await client.send(type="input_text", text=f"again {n}")
            assert (await client.until("response.completed", "rate_limited"))[-1][
                "type"
            ] == "response.completed"
        await client.send(type="input_text", text="one too many")
        assert (await client.until("response.completed", "rate_limited"))[-1][
            "type"
        ] == "rate_limited"


async def _chat_until_stopped(
    gw: RunningGateway, user: str, token: str, stop: asyncio.Event, told: dict[str, list[Any]]
) -> None:
    """One user's WebSocket turns, back to back, until `stop`; every `response.completed` the
    client got goes into `told[user]` as (turn id, stored)."""
    counter = itertools.count()
    async with ws_client(gw.ws_url, token) as client:
        await client.recv()
        while not stop.is_set():
            turn_id = f"{user}-{next(counter)}"
            await client.send(type="input_text", text=f"tip please {turn_id}", turn_id=turn_id)
            end = (await client.until("response.completed", "response.failed", "error"))[-1]
            if end["type"] == "response.completed":
                told[user].append((turn_id, end["stored"]))
            await asyncio.sleep(0.05)  # a user's pace; the drain must outrun the traffic


async def test_postgres_killed_mid_traffic_loses_no_completed_turn(
    fast_sim: Any, tmp_path: Path, token: Token
) -> None:
    pg = await asyncio.to_thread(KillablePostgres, tmp_path)
    try:
        await _outage_scenario(fast_sim, tmp_path, token, pg)
    finally:
        await asyncio.to_thread(pg.close)


async def _outage_scenario(
    fast_sim: Any, tmp_path: Path, token: Token, pg: KillablePostgres
) -> None:
    quotas = QuotaSettings(turns_per_minute=10_000, tokens_per_day=10_000_000)
    settings = make_settings(
        fast_sim.url,
        tmp_path,
        persistence=True,
        database_url=pg.dsn,
        quotas=quotas,
        store_timeout_s=2.0,
    )
    users = ["rae", "sam", "tess"]
    told: dict[str, list[Any]] = {u: [] for u in users}
    stop = asyncio.Event()
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        store = gw.app.state.gateway.persistence.turns
        async with asyncio.TaskGroup() as tasks:
            for user in users:
                tasks.create_task(_chat_until_stopped(gw, user, token(user), stop, told))
            await eventually(lambda: sum(map(len, told.values())) >= 10)
            await asyncio.to_thread(pg.kill)
            await eventually(lambda: store.status().spooled >= 10)
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["spool"].endswith("turns waiting")
            # Reads that need the database answer a JSON 503 meanwhile.
            sessions = await http.get(
                "/v1/sessions", headers={"Authorization": f"Bearer {token('rae')}"}
            )
            assert sessions.status_code == 503
            assert sessions.json()["error"]["code"] == "database_unavailable"
            # A new WebSocket cannot open its session: told to retry, closed with 1013.
            async with ws_client(gw.ws_url, token("vera")) as client:
                refused = await client.recv()
                assert refused["code"] == "database_unavailable" and refused["retryable"]
                with pytest.raises(ConnectionClosed) as closed:
                    await client.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            await asyncio.to_thread(pg.restart)
            await eventually(lambda: store.status().spooled == 0, timeout_s=30)
            spooled_before = store.drained_total
            await asyncio.sleep(0.3)  # turns go straight to the database again
            stop.set()
        assert spooled_before >= 10
        conn = await asyncpg.connect(pg.dsn)
        try:
            for user in users:
                rows = await conn.fetch(
                    "SELECT turn_id FROM interactions WHERE user_id = $1 ORDER BY id", user
                )
                got = [r["turn_id"] for r in rows]
                completed = [turn_id for turn_id, _ in told[user]]
                # Every turn the client was told completed is there, once, in the order told.
                assert [t for t in got if t in set(completed)] == completed
                assert len(got) == len(set(got))
        finally:
            await conn.close()
    stored = {where for turns in told.values() for _, where in turns}
    assert stored == {"db", "spool"}


async def test_a_full_spool_refuses_new_turns_on_every_channel(
    fast_sim: Any, tmp_path: Path, database_dsn: str, token: Token
) -> None:
    # No room at all: as if Postgres had been away long enough to fill the spool.
    settings = make_settings(
        fast_sim.url, tmp_path, persistence=True, database_url=database_dsn, spool_max_mb=0
    )
    headers = {"Authorization": f"Bearer {token('wes')}"}
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        refused = await http.post("/v1/chat", json={"message": "hello"}, headers=headers)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "storage_unavailable"
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["spool"] == "full"
        async with ws_client(gw.ws_url, token("wes")) as client:
            await client.recv()
            await client.send(type="input_text", text="hello")
            error = (await client.until("error", "response.completed"))[-1]
            assert error["code"] == "storage_unavailable" and error["retryable"]
